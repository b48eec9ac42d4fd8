package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/signet-mesh/signet/internal/mtlspolicy"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func mtlsCommand() *command {
	return &command{name: "mtls", summary: "mTLS modes (STRICT, PERMISSIVE, DISABLE) and readiness for STRICT", sub: []*command{
		{name: "set", summary: "set the mode of the trust domain, a SPIFFE ID prefix or a SPIFFE ID", run: runMTLSSet},
		{name: "list", summary: "list mTLS policies", run: runMTLSList},
		{name: "delete", summary: "delete an mTLS policy", run: runMTLSDelete},
		{name: "status", summary: "each workload's mode, connection counts and readiness for STRICT", run: runMTLSStatus},
	}}
}

// mtlsPolicyJSON is the -o json shape of a policy.
type mtlsPolicyJSON struct {
	ID string `json:"id"`
	// Scope is "default", "prefix" or "spiffe_id".
	Scope       string   `json:"scope"`
	SPIFFEID    string   `json:"spiffe_id,omitempty"`
	Prefix      string   `json:"prefix,omitempty"`
	Port        uint32   `json:"port,omitempty"`
	Mode        string   `json:"mode"`
	ExemptPorts []uint32 `json:"exempt_ports,omitempty"`
	DryRun      bool     `json:"dry_run"`
	Revision    int64    `json:"revision"`
	// PlaintextWorkloads is set by `mtls set --force` over workloads that
	// still received plaintext.
	PlaintextWorkloads []string `json:"plaintext_workloads,omitempty"`
}

// mtlsStatusJSON is the -o json shape of one workload's status (a
// contract: spiffe_id, mode, mtls_connections, plaintext_connections and
// ready are always there).
type mtlsStatusJSON struct {
	SPIFFEID             string         `json:"spiffe_id"`
	Mode                 string         `json:"mode"`
	DryRun               bool           `json:"dry_run"`
	MTLSConnections      int64          `json:"mtls_connections"`
	PlaintextConnections int64          `json:"plaintext_connections"`
	RefusedConnections   int64          `json:"refused_connections"`
	Ready                bool           `json:"ready"`
	PlaintextSources     []string       `json:"plaintext_sources"`
	Ports                []mtlsPortJSON `json:"ports"`
	WindowSeconds        int64          `json:"window_seconds"`
}

type mtlsPortJSON struct {
	Port                 uint32 `json:"port"`
	Mode                 string `json:"mode"`
	DryRun               bool   `json:"dry_run"`
	Exempt               bool   `json:"exempt"`
	MTLSConnections      int64  `json:"mtls_connections"`
	PlaintextConnections int64  `json:"plaintext_connections"`
	RefusedConnections   int64  `json:"refused_connections"`
}

func modeName(m adminv1.MTLSMode) string {
	if s, ok := strings.CutPrefix(m.String(), "MTLS_MODE_"); ok {
		return s
	}
	return m.String()
}

func modeFromName(s string) (adminv1.MTLSMode, error) {
	m, err := mtlspolicy.ParseMode(s)
	if err != nil {
		return 0, fmt.Errorf("--mode %q: use STRICT, PERMISSIVE or DISABLE", s)
	}
	return adminv1.MTLSMode(adminv1.MTLSMode_value["MTLS_MODE_"+string(m)]), nil
}

func policyToJSON(p *adminv1.MTLSPolicy) mtlsPolicyJSON {
	out := mtlsPolicyJSON{
		ID: p.Id, Scope: "default", SPIFFEID: p.SpiffeId, Prefix: p.Prefix, Port: p.Port,
		Mode: modeName(p.Mode), ExemptPorts: p.ExemptPorts, DryRun: p.DryRun, Revision: p.Revision,
	}
	switch {
	case p.SpiffeId != "":
		out.Scope = "spiffe_id"
	case p.Prefix != "":
		out.Scope = "prefix"
	}
	return out
}

func policyRow(p mtlsPolicyJSON) []string {
	scope := "default (trust domain)"
	switch p.Scope {
	case "spiffe_id":
		scope = p.SPIFFEID
	case "prefix":
		scope = "prefix " + p.Prefix
	}
	port := "*"
	if p.Port != 0 {
		port = strconv.FormatUint(uint64(p.Port), 10)
	}
	mode := p.Mode
	if p.DryRun {
		mode += " (dry run)"
	}
	exempt := make([]string, 0, len(p.ExemptPorts))
	for _, e := range p.ExemptPorts {
		exempt = append(exempt, strconv.FormatUint(uint64(e), 10))
	}
	return []string{p.ID, scope, port, mode, strings.Join(exempt, ",")}
}

var policyHeader = []string{"ID", "SCOPE", "PORT", "MODE", "EXEMPT PORTS"}

// portFlag parses a port flag value: 1-65535.
func portFlag(name, v string) (uint32, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 || n > 65535 {
		return 0, fmt.Errorf("--%s %q: must be a port number, 1-65535", name, v)
	}
	return uint32(n), nil
}

func runMTLSSet(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "mtls set", "signet mtls set --mode STRICT|PERMISSIVE|DISABLE [--spiffe-id ID | --prefix spiffe://TD/PATH/] [--port N] [--exempt-port N ...] [--dry-run] [--force]")
	var af adminFlags
	af.register(fs, env)
	var exempt stringList
	var (
		modeS    = fs.String("mode", "", "STRICT (mTLS only), PERMISSIVE (mTLS and plaintext) or DISABLE (plaintext)")
		spiffeID = fs.String("spiffe-id", "", "scope: one workload")
		prefix   = fs.String("prefix", "", "scope: the SPIFFE IDs under this path prefix (spiffe://TD/PATH/)")
		portS    = fs.String("port", "", "only connections to this port (default: every port)")
		dryRun   = fs.Bool("dry-run", false, "with STRICT: let through, count and log what STRICT would refuse")
		force    = fs.Bool("force", false, "apply even though workloads in scope received plaintext in the last 10 minutes")
	)
	fs.Var(&exempt, "exempt-port", "port that passes plaintext in every mode (health checks), repeatable")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	if err := af.validate(); err != nil {
		return err
	}
	if *modeS == "" {
		fs.Usage()
		return fmt.Errorf("--mode is required: STRICT, PERMISSIVE or DISABLE")
	}
	mode, err := modeFromName(*modeS)
	if err != nil {
		return err
	}
	if *spiffeID != "" && *prefix != "" {
		return fmt.Errorf("--spiffe-id and --prefix are exclusive: a policy has one scope (neither sets the trust-domain default)")
	}
	p := &adminv1.MTLSPolicy{SpiffeId: *spiffeID, Prefix: *prefix, Mode: mode, DryRun: *dryRun}
	if *portS != "" {
		if p.Port, err = portFlag("port", *portS); err != nil {
			return err
		}
	}
	for _, e := range exempt {
		n, err := portFlag("exempt-port", e)
		if err != nil {
			return err
		}
		p.ExemptPorts = append(p.ExemptPorts, n)
	}
	if *dryRun && mode != adminv1.MTLSMode_MTLS_MODE_STRICT {
		return fmt.Errorf("--dry-run goes with --mode STRICT: it lets through what STRICT would refuse")
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.SetMTLSPolicyResponse, error) {
		return c.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: p, Force: *force})
	})
	if err != nil {
		return err
	}
	if len(resp.PlaintextWorkloads) > 0 {
		fmt.Fprintf(env.stderr, "warning: forced over workloads that received plaintext recently; their plaintext clients are now refused: %s\n",
			strings.Join(resp.PlaintextWorkloads, ", "))
	}
	out := policyToJSON(resp.Policy)
	out.PlaintextWorkloads = resp.PlaintextWorkloads
	if af.output == "json" {
		return printJSON(env.stdout, out)
	}
	return printTable(env.stdout, policyHeader, [][]string{policyRow(out)})
}

func runMTLSList(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "mtls list", "signet mtls list [-o json]")
	var af adminFlags
	af.register(fs, env)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	if err := af.validate(); err != nil {
		return err
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListMTLSPoliciesResponse, error) {
		return c.ListMTLSPolicies(ctx, &adminv1.ListMTLSPoliciesRequest{})
	})
	if err != nil {
		return err
	}
	out := make([]mtlsPolicyJSON, 0, len(resp.Policies))
	for _, p := range resp.Policies {
		out = append(out, policyToJSON(p))
	}
	if af.output == "json" {
		return printJSON(env.stdout, out)
	}
	rows := make([][]string, 0, len(out))
	for _, p := range out {
		rows = append(rows, policyRow(p))
	}
	if len(rows) == 0 {
		fmt.Fprintln(env.stderr, "no mTLS policies: every workload is PERMISSIVE")
	}
	return printTable(env.stdout, policyHeader, rows)
}

func runMTLSDelete(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "mtls delete", "signet mtls delete ID [--force]")
	var af adminFlags
	af.register(fs, env)
	force := fs.Bool("force", false, "delete even though workloads that received plaintext recently would fall under STRICT")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos, "ID"); err != nil {
		return err
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.DeleteMTLSPolicyResponse, error) {
		return c.DeleteMTLSPolicy(ctx, &adminv1.DeleteMTLSPolicyRequest{Id: pos[0], Force: *force})
	})
	if err != nil {
		return err
	}
	if len(resp.PlaintextWorkloads) > 0 {
		fmt.Fprintf(env.stderr, "warning: forced over workloads that received plaintext recently: %s\n", strings.Join(resp.PlaintextWorkloads, ", "))
	}
	fmt.Fprintf(env.stderr, "deleted mTLS policy %s\n", pos[0])
	return nil
}

func runMTLSStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "mtls status", "signet mtls status [-o json]")
	var af adminFlags
	af.register(fs, env)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	if err := af.validate(); err != nil {
		return err
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.GetMTLSStatusResponse, error) {
		return c.GetMTLSStatus(ctx, &adminv1.GetMTLSStatusRequest{})
	})
	if err != nil {
		return err
	}
	out := make([]mtlsStatusJSON, 0, len(resp.Workloads))
	for _, w := range resp.Workloads {
		s := mtlsStatusJSON{
			SPIFFEID: w.SpiffeId, Mode: modeName(w.Mode), DryRun: w.DryRun,
			MTLSConnections: w.MtlsConnections, PlaintextConnections: w.PlaintextConnections, RefusedConnections: w.RefusedConnections,
			Ready: w.Ready, PlaintextSources: nonNil(w.PlaintextSources), Ports: []mtlsPortJSON{}, WindowSeconds: resp.WindowSeconds,
		}
		for _, p := range w.Ports {
			s.Ports = append(s.Ports, mtlsPortJSON{
				Port: p.Port, Mode: modeName(p.Mode), DryRun: p.DryRun, Exempt: p.Exempt,
				MTLSConnections: p.MtlsConnections, PlaintextConnections: p.PlaintextConnections, RefusedConnections: p.RefusedConnections,
			})
		}
		out = append(out, s)
	}
	if af.output == "json" {
		return printJSON(env.stdout, out)
	}
	fmt.Fprintf(env.stdout, "connection counts over the last %s\n\n", time.Duration(resp.WindowSeconds)*time.Second)
	rows := make([][]string, 0, len(out))
	for _, s := range out {
		mode := s.Mode
		if s.DryRun {
			mode += " (dry run)"
		}
		for _, p := range s.Ports {
			if p.Mode != s.Mode || p.DryRun != s.DryRun || p.Exempt {
				mode += fmt.Sprintf(", %d:%s", p.Port, portMode(p))
			}
		}
		ready := "READY"
		if !s.Ready {
			ready = "NOT READY"
		}
		rows = append(rows, []string{s.SPIFFEID, mode, strconv.FormatInt(s.MTLSConnections, 10), strconv.FormatInt(s.PlaintextConnections, 10),
			strconv.FormatInt(s.RefusedConnections, 10), ready, strings.Join(s.PlaintextSources, ",")})
	}
	return printTable(env.stdout, []string{"SPIFFE ID", "MODE", "MTLS", "PLAINTEXT", "REFUSED", "STRICT", "PLAINTEXT FROM"}, rows)
}

func portMode(p mtlsPortJSON) string {
	switch {
	case p.Exempt:
		return "exempt"
	case p.DryRun:
		return p.Mode + " (dry run)"
	}
	return p.Mode
}
