package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-mesh/signet/internal/nodeapi"
)

func workloadCommand() *command {
	return &command{name: "workload", summary: "act as a workload: fetch SVIDs from an agent's Workload API", sub: []*command{
		{name: "fetch", summary: "fetch this process's X509-SVIDs and bundle", run: runWorkloadFetch},
	}}
}

// workloadSVIDJSON is the -o json shape of `workload fetch`.
type workloadSVIDJSON struct {
	SPIFFEID  string `json:"spiffe_id"`
	Serial    string `json:"serial"`
	NotBefore string `json:"not_before"`
	ExpiresAt string `json:"expires_at"`
	Hint      string `json:"hint,omitempty"`
}

func runWorkloadFetch(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "workload fetch", "signet workload fetch --socket PATH [--write DIR] [-o json]")
	socket := fs.String("socket", defaultDataDir+"/"+agentSocketName, "agent socket")
	write := fs.String("write", "", "also write svid.pem, svid.key and bundle.pem into this directory")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for an SVID")
	output := fs.String("o", "table", "output format: table or json")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	abs, err := filepath.Abs(*socket)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+abs))
	if err != nil {
		return fmt.Errorf("fetching from %s: %w", *socket, err)
	}
	out := make([]workloadSVIDJSON, 0, len(resp.SVIDs))
	for _, s := range resp.SVIDs {
		leaf := s.Certificates[0]
		out = append(out, workloadSVIDJSON{
			SPIFFEID: s.ID.String(), Serial: nodeapi.FormatSerial(leaf.SerialNumber),
			NotBefore: leaf.NotBefore.UTC().Format(time.RFC3339), ExpiresAt: leaf.NotAfter.UTC().Format(time.RFC3339), Hint: s.Hint,
		})
	}
	if *write != "" && len(resp.SVIDs) > 0 {
		certs, key, err := resp.DefaultSVID().Marshal()
		if err != nil {
			return err
		}
		b, err := resp.Bundles.GetX509BundleForTrustDomain(resp.DefaultSVID().ID.TrustDomain())
		if err != nil {
			return err
		}
		bundlePEM, err := b.Marshal()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*write, 0o700); err != nil {
			return err
		}
		for name, data := range map[string][]byte{"svid.pem": certs, "svid.key": key, "bundle.pem": bundlePEM} {
			if err := os.WriteFile(filepath.Join(*write, name), data, 0o600); err != nil {
				return err
			}
		}
	}
	if *output == "json" {
		return printJSON(env.stdout, out)
	}
	rows := make([][]string, 0, len(out))
	for _, s := range out {
		rows = append(rows, []string{s.SPIFFEID, s.Serial, s.ExpiresAt})
	}
	return printTable(env.stdout, []string{"SPIFFE ID", "SERIAL", "EXPIRES"}, rows)
}
