package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type entryUpdateOptions struct {
	admin          adminOptions
	output         outputOption
	x509TTL        time.Duration
	jwtTTL         time.Duration
	dns, selectors []string
	clearDNS       bool
	allowDNS       dnsAllowOptions
	federatesWith  []string
	clearFederates bool
}

func (o *entryUpdateOptions) addFlags(cmd *cobra.Command, env *cliEnv) {
	fs := cmd.Flags()
	o.admin.addFlags(fs, env)
	o.output.addFlags(cmd, objectFormats)
	fs.Var(cli.NewDurationValue(&o.x509TTL, 0), "x509-ttl", "new X509-SVID lifetime, like 1h or 1d")
	fs.Var(cli.NewDurationValue(&o.jwtTTL, 0), "jwt-ttl", "new JWT-SVID lifetime")
	fs.StringArrayVar(&o.dns, "dns", nil, "DNS SAN (a host `name`), repeatable: the given names replace the entry's")
	fs.BoolVar(&o.clearDNS, "clear-dns", false, "remove every DNS SAN")
	o.allowDNS.addFlags(fs)
	fs.StringArrayVar(&o.selectors, "selector", nil, "`type:value` selector, repeatable: the given selectors replace the entry's")
	fs.StringArrayVar(&o.federatesWith, "federates-with", nil, "trust `domain` whose federated bundle the workload gets, repeatable: the given domains replace the entry's")
	fs.BoolVar(&o.clearFederates, "clear-federates-with", false, "stop federating with any trust domain")
}

func newEntryUpdateCommand(env *cliEnv) *cobra.Command {
	var o entryUpdateOptions
	cmd := &cobra.Command{
		Use:   "update ID [--x509-ttl D] [--jwt-ttl D] [--dns NAME... | --clear-dns] [--selector S...] [--federates-with TD... | --clear-federates-with]",
		Short: "change an entry in place: TTLs, DNS names, selectors, federated trust domains",
		Long: `Change an entry in place. It keeps its id and takes a new revision, so agents
re-mint its SVIDs. A flag left out keeps the entry's value; --dns and
--selector replace the whole list.`,
		Example: `  signet entry update 6b1f0c2e --x509-ttl 2h
  signet entry update 6b1f0c2e --dns web.internal --dns web.prod.internal
  signet entry update 6b1f0c2e --clear-dns
  signet entry update 6b1f0c2e --selector unix:uid:1000 --selector unix:path:/usr/bin/web`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, env, args[0]) },
	}
	o.addFlags(cmd, env)
	return cmd
}

func (o *entryUpdateOptions) run(cmd *cobra.Command, env *cliEnv, id string) error {
	fs := cmd.Flags()
	req := &adminv1.UpdateEntryRequest{Id: id}
	if fs.Changed("x509-ttl") {
		s, err := ttlSeconds("x509-ttl", o.x509TTL)
		if err != nil {
			return err
		}
		req.X509TtlSeconds = &s
	}
	if fs.Changed("jwt-ttl") {
		s, err := ttlSeconds("jwt-ttl", o.jwtTTL)
		if err != nil {
			return err
		}
		req.JwtTtlSeconds = &s
	}
	switch {
	case o.clearDNS && fs.Changed("dns"):
		return errors.New("--dns and --clear-dns are exclusive: --dns replaces the names, --clear-dns removes them")
	case o.clearDNS:
		req.DnsNames = &adminv1.StringList{}
	case fs.Changed("dns"):
		req.DnsNames = &adminv1.StringList{Values: o.dns}
	}
	req.AllowDnsWildcards, req.AllowDnsIpAddresses = o.allowDNS.wildcards, o.allowDNS.ipAddresses
	if fs.Changed("selector") {
		req.Selectors = &adminv1.StringList{Values: o.selectors}
	}
	switch {
	case o.clearFederates && fs.Changed("federates-with"):
		return errors.New("--federates-with and --clear-federates-with are exclusive")
	case o.clearFederates:
		req.FederatesWith = &adminv1.StringList{}
	case fs.Changed("federates-with"):
		req.FederatesWith = &adminv1.StringList{Values: o.federatesWith}
	}
	if req.X509TtlSeconds == nil && req.JwtTtlSeconds == nil && req.DnsNames == nil && req.Selectors == nil && req.FederatesWith == nil {
		return errors.New("nothing to update: give --x509-ttl, --jwt-ttl, --dns, --clear-dns, --selector, --federates-with or --clear-federates-with")
	}
	resp, err := adminCall(cmd.Context(), &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.UpdateEntryResponse, error) {
		return c.UpdateEntry(ctx, req)
	})
	if err != nil {
		return err
	}
	return printEntry(env.stdout, o.output, resp.Entry)
}
