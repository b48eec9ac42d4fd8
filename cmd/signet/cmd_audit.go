package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.step.sm/crypto/pemutil"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func newAuditCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("audit", "the tamper-evident audit trail", `  signet audit export --since 1d --out audit.jsonl
  signet audit verify --file audit.jsonl --bundle bundle.pem
  signet audit prune --before 90d --dry-run`,
		newAuditExportCommand(env),
		newAuditVerifyCommand(env),
		newAuditPruneCommand(env),
	)
}

// auditTypes are the record types --type takes.
var auditTypes = audit.Types()

// parseWhen reads a time flag: RFC 3339, or a duration meaning that long
// ago ("24h", "7d").
func parseWhen(flag, v string, now time.Time) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UnixNano(), nil
	}
	if d, err := cli.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d).UnixNano(), nil
	}
	return 0, fmt.Errorf("%s %q: use an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (24h, 7d)", flag, v)
}

// streamExport runs ExportAudit and hands each JSON line to fn.
func streamExport(ctx context.Context, a *adminOptions, req *adminv1.ExportAuditRequest, fn func(line []byte) error) error {
	client, closeFn, err := a.dial()
	if err != nil {
		return err
	}
	defer closeFn()
	stream, err := client.ExportAudit(ctx, req)
	if err != nil {
		return a.rpcError(err)
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // --follow interrupted
			}
			return a.rpcError(err)
		}
		if err := fn(msg.GetRecordJson()); err != nil {
			return err
		}
	}
}

// bundleKeys reads the checkpoint keys (root public keys, by subject key
// ID) from a PEM bundle.
func bundleKeys(path string) (audit.Keys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--bundle: %w", err)
	}
	certs, err := pemutil.ParseCertificateBundle(data)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("--bundle %s: no PEM certificates (use the output of signet bundle show)", path)
	}
	return keysOf(certs), nil
}

func keysOf(certs []*x509.Certificate) audit.Keys {
	m := map[string]crypto.PublicKey{}
	for _, c := range certs {
		m[rotation.CheckpointKeyID(c)] = c.PublicKey
	}
	return audit.KeyMap(m)
}

// serverRootKeys returns the public keys of every root the server has held,
// retired ones included, so old checkpoints verify too.
func serverRootKeys(ctx context.Context, a *adminOptions) (audit.Keys, error) {
	resp, err := listAuthorities(ctx, a)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for _, a := range resp.GetAuthorities() {
		if a.GetKind() != "root" || len(a.GetCertificate()) == 0 {
			continue
		}
		c, err := x509.ParseCertificate(a.GetCertificate())
		if err != nil {
			return nil, fmt.Errorf("server sent a bad root certificate: %w", err)
		}
		certs = append(certs, c)
	}
	return keysOf(certs), nil
}
