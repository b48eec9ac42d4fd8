package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

// workloadSVIDJSON is the -o json shape of `workload fetch`.
type workloadSVIDJSON struct {
	SPIFFEID  string `json:"spiffe_id"`
	Serial    string `json:"serial"`
	NotBefore string `json:"not_before"`
	ExpiresAt string `json:"expires_at"`
	Hint      string `json:"hint,omitempty"`
}

type workloadFetchOptions struct {
	socket  agentSocketOption
	output  outputOption
	write   string
	timeout time.Duration
}

func newWorkloadFetchCommand(env *cliEnv) *cobra.Command {
	o := workloadFetchOptions{socket: agentSocketOption{getenv: env.getenv}}
	cmd := &cobra.Command{
		Use:   "fetch",
		Short: "fetch this process's X509-SVIDs and bundle",
		Long: `Fetch this process's X509-SVIDs over the SPIFFE Workload API, as a workload
would: the agent attests the calling process (uid, gid, executable) and
answers with the SVIDs of every entry it matches.`,
		Example: `  signet workload fetch
  signet workload fetch --socket /run/signet/agent.sock -o json
  SPIFFE_ENDPOINT_SOCKET=unix:///run/signet/agent.sock signet workload fetch
  signet workload fetch --write ./certs     # svid.pem, svid.key, bundle.pem`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.socket.flag, "socket", "", o.socket.help())
	o.output.addFlags(cmd, listFormats)
	fs.StringVar(&o.write, "write", "", "also write svid.pem, svid.key and bundle.pem into this directory")
	fs.Var(cli.NewDurationValue(&o.timeout, 30*time.Second), "timeout", "how long to wait for an SVID")
	return cmd
}

func (o *workloadFetchOptions) run(ctx context.Context, env *cliEnv) error {
	socket, err := o.socket.path()
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(socket)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	resp, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+abs))
	if err != nil {
		return fmt.Errorf("fetching from %s: %w", socket, err)
	}
	out := make([]workloadSVIDJSON, 0, len(resp.SVIDs))
	rows := make([][]string, 0, len(resp.SVIDs))
	for _, s := range resp.SVIDs {
		leaf := s.Certificates[0]
		j := workloadSVIDJSON{
			SPIFFEID: s.ID.String(), Serial: nodeapi.FormatSerial(leaf.SerialNumber),
			NotBefore: leaf.NotBefore.UTC().Format(time.RFC3339), ExpiresAt: leaf.NotAfter.UTC().Format(time.RFC3339), Hint: s.Hint,
		}
		out = append(out, j)
		rows = append(rows, []string{j.SPIFFEID, j.Serial, j.ExpiresAt})
	}
	if o.write != "" && len(resp.SVIDs) > 0 {
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
		if err := os.MkdirAll(o.write, 0o700); err != nil {
			return err
		}
		for name, data := range map[string][]byte{"svid.pem": certs, "svid.key": key, "bundle.pem": bundlePEM} {
			if err := os.WriteFile(filepath.Join(o.write, name), data, 0o600); err != nil {
				return err
			}
		}
	}
	return o.output.printList(env.stdout, out, []string{"SPIFFE ID", "SERIAL", "EXPIRES"}, rows)
}
