package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type entryCreateOptions struct {
	admin          adminOptions
	output         outputOption
	spiffeID       string
	parentID       string
	selectors, dns []string
	x509TTL        time.Duration
	jwtTTL         time.Duration
	file           string
	allowDNS       dnsAllowOptions
	federatesWith  []string
}

func (o *entryCreateOptions) addFlags(cmd *cobra.Command, env *cliEnv) {
	fs := cmd.Flags()
	o.admin.addFlags(fs, env)
	o.output.addFlags(cmd, objectFormats)
	fs.StringVar(&o.spiffeID, "spiffe-id", "", "the workload's SPIFFE ID")
	fs.StringVar(&o.parentID, "parent-id", "", "SPIFFE ID of the agent (or cluster) that may mint it")
	fs.StringArrayVar(&o.selectors, "selector", nil, "`type:value` selector, repeatable (unix:uid, unix:gid, unix:user, unix:group, unix:path, unix:sha256, k8s:ns, k8s:sa, ...)")
	fs.StringArrayVar(&o.dns, "dns", nil, "DNS SAN (a host `name`), repeatable")
	fs.Var(cli.NewDurationValue(&o.x509TTL, 0), "x509-ttl", "X509-SVID lifetime, like 1h or 1d (default: the server's, 1h)")
	fs.Var(cli.NewDurationValue(&o.jwtTTL, 0), "jwt-ttl", "JWT-SVID lifetime (default: the server's, 5m)")
	o.allowDNS.addFlags(fs)
	fs.StringArrayVar(&o.federatesWith, "federates-with", nil, "trust `domain` (other.org) whose federated bundle the workload gets, repeatable (see signet federation create)")
	fs.StringVar(&o.file, "file", "", "YAML or JSON list of entries, created in one transaction; - reads standard input")
}

func newEntryCreateCommand(env *cliEnv) *cobra.Command {
	var o entryCreateOptions
	cmd := &cobra.Command{
		Use:   "create (--spiffe-id ID --parent-id NODE_ID --selector S... | --file FILE)",
		Short: "register a workload (or many with --file)",
		Long: `Register a workload: it gets the SPIFFE ID when the agent --parent-id names
attests a process that matches every --selector. With --file, every entry of
the file is created, or none (one transaction). Prints the new entry ids.`,
		Example: `  signet entry create --spiffe-id spiffe://example.org/web \
      --parent-id spiffe://example.org/signet/agent/join_token/node1 \
      --selector unix:uid:1000 --x509-ttl 1h --dns web.internal
  signet entry create --spiffe-id spiffe://example.org/api \
      --parent-id spiffe://example.org/signet/agent/join_token/node1 \
      --selector unix:uid:1001 --federates-with other.org
  signet entry create --file entries.yaml
  cat entries.yaml | signet entry create --file -`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, env) },
	}
	o.addFlags(cmd, env)
	return cmd
}

func (o *entryCreateOptions) run(cmd *cobra.Command, env *cliEnv) error {
	ctx := cmd.Context()
	var entries []*adminv1.Entry
	fs := cmd.Flags()
	if o.file != "" {
		for _, name := range []string{"spiffe-id", "parent-id", "selector", "dns", "x509-ttl", "jwt-ttl", "federates-with"} {
			if fs.Changed(name) {
				return fmt.Errorf("--file cannot be combined with --%s: put it in the file", name)
			}
		}
		var err error
		if entries, err = readEntries(env, o.file); err != nil {
			return err
		}
	} else {
		if o.spiffeID == "" {
			return errors.New("--spiffe-id is required (or --file)")
		}
		if o.parentID == "" {
			return errors.New("--parent-id is required")
		}
		e := &adminv1.Entry{SpiffeId: o.spiffeID, ParentId: o.parentID, Selectors: o.selectors, DnsNames: o.dns, FederatesWith: o.federatesWith}
		var err error
		if fs.Changed("x509-ttl") {
			if e.X509TtlSeconds, err = ttlSeconds("x509-ttl", o.x509TTL); err != nil {
				return err
			}
		}
		if fs.Changed("jwt-ttl") {
			if e.JwtTtlSeconds, err = ttlSeconds("jwt-ttl", o.jwtTTL); err != nil {
				return err
			}
		}
		entries = []*adminv1.Entry{e}
	}
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.CreateEntriesResponse, error) {
		return c.CreateEntries(ctx, &adminv1.CreateEntriesRequest{
			Entries: entries, AllowDnsWildcards: o.allowDNS.wildcards, AllowDnsIpAddresses: o.allowDNS.ipAddresses,
		})
	})
	if err != nil {
		return err
	}
	if o.output.json() {
		out := make([]entryJSON, 0, len(resp.Entries))
		for _, e := range resp.Entries {
			out = append(out, entryToJSON(e))
		}
		return printJSON(env.stdout, out)
	}
	for _, e := range resp.Entries {
		fmt.Fprintln(env.stdout, e.Id)
	}
	return nil
}

// readEntries reads an entries file, or standard input for "-".
func readEntries(env *cliEnv, path string) ([]*adminv1.Entry, error) {
	var data []byte
	var err error
	name := path
	if path == "-" {
		name = "<stdin>"
		data, err = cli.ReadAllLimited(env.stdin, name, maxEntriesFile)
	} else {
		data, err = cli.ReadLimited(path, maxEntriesFile)
	}
	if err != nil {
		return nil, fmt.Errorf("reading entries file: %w", err)
	}
	return parseEntryFile(name, data)
}
