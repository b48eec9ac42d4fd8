package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/rotation"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func auditCommand() *command {
	return &command{name: "audit", summary: "the tamper-evident audit trail", sub: []*command{
		{name: "export", summary: "export records as JSON Lines or CSV, ending with a signed checkpoint", run: runAuditExport},
		{name: "verify", summary: "check an export (or the live log) and name the first bad record", run: runAuditVerify},
		{name: "prune", summary: "remove exported records older than a time", run: runAuditPrune},
	}}
}

// parseWhen reads a time flag: RFC 3339, or a duration meaning that long
// ago ("24h").
func parseWhen(flag, v string, now time.Time) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UnixNano(), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d).UnixNano(), nil
	}
	return 0, fmt.Errorf("%s %q: use an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (24h)", flag, v)
}

// streamExport runs ExportAudit and hands each JSON line to fn.
func streamExport(ctx context.Context, af *adminFlags, req *adminv1.ExportAuditRequest, fn func(line []byte) error) error {
	client, closeFn, err := af.dial()
	if err != nil {
		return err
	}
	defer closeFn()
	stream, err := client.ExportAudit(ctx, req)
	if err != nil {
		return rpcError(af, err)
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
			return rpcError(af, err)
		}
		if err := fn(msg.GetRecordJson()); err != nil {
			return err
		}
	}
}

func runAuditExport(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "audit export", "signet audit export [--format jsonl|csv] [--since T] [--until T] [--type T,...] [--spiffe-id ID] [--out FILE] [--follow]")
	var af adminFlags
	af.register(fs, env)
	format := fs.String("format", "jsonl", "jsonl or csv")
	since := fs.String("since", "", "only records at or after T (RFC 3339, or a duration ago like 24h)")
	until := fs.String("until", "", "only records before T")
	types := fs.String("type", "", "only these comma-separated record types (svid.issued, entry.created, ...)")
	spiffeID := fs.String("spiffe-id", "", "only records about this SPIFFE ID")
	out := fs.String("out", "", "write to FILE instead of standard output")
	follow := fs.Bool("follow", false, "keep streaming new records (for SIEM ingestion); no final checkpoint")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	if *format != "jsonl" && *format != "csv" {
		return fmt.Errorf("unknown --format %q: use jsonl or csv", *format)
	}
	now := time.Now()
	req := &adminv1.ExportAuditRequest{SpiffeId: *spiffeID, Follow: *follow}
	if req.Since, err = parseWhen("--since", *since, now); err != nil {
		return err
	}
	if req.Until, err = parseWhen("--until", *until, now); err != nil {
		return err
	}
	if *types != "" {
		req.Types = strings.Split(*types, ",")
	}
	var w io.Writer = env.stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var csvw *audit.Writer
	if *format == "csv" {
		if csvw, err = audit.NewWriter(bw, audit.FormatCSV); err != nil {
			return err
		}
	}
	err = streamExport(ctx, &af, req, func(line []byte) error {
		if csvw == nil {
			_, err := bw.Write(line)
			if err == nil && *follow {
				err = bw.Flush()
			}
			return err
		}
		r, err := audit.ParseLine(bytes.TrimSuffix(line, []byte("\n")))
		if err != nil {
			return fmt.Errorf("server sent a bad record: %w", err)
		}
		if err := csvw.Write(&r); err != nil {
			return err
		}
		if *follow {
			return csvw.Flush()
		}
		return nil
	})
	if csvw != nil {
		if ferr := csvw.Flush(); err == nil {
			err = ferr
		}
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return err
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

func runAuditVerify(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "audit verify", "signet audit verify [--file export.jsonl|export.csv --bundle bundle.pem]")
	var af adminFlags
	af.register(fs, env)
	file := fs.String("file", "", "an export to check offline (default: export and check the live log)")
	bundle := fs.String("bundle", "", "PEM trust bundle whose roots signed the checkpoints (signet bundle show)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	var (
		keys audit.Keys
		src  io.Reader
	)
	if *bundle != "" {
		if keys, err = bundleKeys(*bundle); err != nil {
			return err
		}
	}
	if *file != "" {
		if keys == nil {
			return errors.New("--bundle is required with --file: the checkpoints are checked against the bundle's roots")
		}
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		src = bufio.NewReaderSize(f, 64<<10)
	} else {
		// Live: export everything to a temporary file (constant memory),
		// then check it with every root the server has had.
		if keys == nil {
			if keys, err = serverRootKeys(ctx, &af); err != nil {
				return err
			}
		}
		tmp, err := os.CreateTemp("", "signet-audit-*.jsonl")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		bw := bufio.NewWriterSize(tmp, 64<<10)
		if err := streamExport(ctx, &af, &adminv1.ExportAuditRequest{}, func(line []byte) error { _, err := bw.Write(line); return err }); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		src = bufio.NewReaderSize(tmp, 64<<10)
	}
	rep, err := audit.Verify(src, keys)
	if err != nil {
		return fmt.Errorf("audit trail does NOT verify: %w", err)
	}
	note := ""
	switch {
	case rep.Filtered:
		note = " (filtered export: records left out by the filter cannot be checked for deletion)"
	case rep.Pruned:
		note = " (log was pruned before seq " + fmt.Sprint(rep.FirstSeq) + ")"
	}
	fmt.Fprintf(env.stdout, "OK: %d records, seq %d..%d, %d checkpoints verified, %d signed by unknown keys%s\n",
		rep.Records, rep.FirstSeq, rep.LastSeq, rep.Checkpoints, rep.UnverifiedCheckpoints, note)
	return nil
}

// serverRootKeys returns the public keys of every root the server has held,
// retired ones included, so old checkpoints verify too.
func serverRootKeys(ctx context.Context, af *adminFlags) (audit.Keys, error) {
	resp, err := listAuthorities(ctx, af)
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

func runAuditPrune(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "audit prune", "signet audit prune --before T")
	var af adminFlags
	af.register(fs, env)
	before := fs.String("before", "", "remove exported records older than T (RFC 3339, or a duration ago like 720h)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	if *before == "" {
		return errors.New("--before is required")
	}
	t, err := parseWhen("--before", *before, time.Now())
	if err != nil {
		return err
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.PruneAuditResponse, error) {
		return c.PruneAudit(ctx, &adminv1.PruneAuditRequest{Before: t})
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "removed %d records\n", resp.GetRemoved())
	return nil
}
