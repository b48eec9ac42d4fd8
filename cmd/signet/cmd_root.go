package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func rootCommand() *command {
	return &command{name: "root", summary: "root rotation: prepared -> active -> retiring -> retired", sub: []*command{
		{name: "list", summary: "list roots (--all: every authority)", run: runRootList},
		{name: "status", summary: "roots and intermediates in use: SVIDs chaining to each, agents that applied each root's bundle", run: runRootStatus},
		{name: "prepare", summary: "create (or import) a new root; it joins the trust bundle at once", run: runRootPrepare},
		{name: "activate", summary: "make the prepared root sign (through a new intermediate); the active one starts retiring", run: runRootActivate},
		{name: "retire", summary: "take the retiring root out of the trust bundle", run: runRootRetire},
	}}
}

// authorityJSON is the -o json shape of an authority (a contract).
type authorityJSON struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	State     string `json:"state"`
	KeyType   string `json:"key_type"`
	NotBefore string `json:"not_before"`
	NotAfter  string `json:"not_after"`
	ParentID  string `json:"parent_id,omitempty"`
	// UnexpiredSVIDs chain to the authority (node SVIDs included).
	UnexpiredSVIDs int64 `json:"unexpired_svids"`
	// AgentsApplied of ConnectedAgents have applied a bundle holding the
	// root; set for roots in the bundle only.
	AgentsApplied   *int64 `json:"agents_applied,omitempty"`
	ConnectedAgents *int64 `json:"connected_agents,omitempty"`
	// ExpiringSoon: within 30 days of expiry (for lives over 90 days), or
	// less than a third of its life left.
	ExpiringSoon bool `json:"expiring_soon"`
	// CrossSignedBy is, for an intermediate, the retiring root that
	// cross-signed it.
	CrossSignedBy string `json:"cross_signed_by,omitempty"`
}

func authorityToJSON(a *adminv1.Authority) authorityJSON {
	j := authorityJSON{
		ID: a.Id, Kind: a.Kind, State: a.State, KeyType: a.KeyType,
		NotBefore: unixTime(a.NotBefore), NotAfter: unixTime(a.NotAfter), ParentID: a.ParentId,
		UnexpiredSVIDs: a.UnexpiredSvids, ExpiringSoon: a.ExpiringSoon, CrossSignedBy: a.CrossSignedBy,
	}
	if a.Kind == "root" && a.State != "retired" {
		applied, connected := a.AgentsApplied, a.ConnectedAgents
		j.AgentsApplied, j.ConnectedAgents = &applied, &connected
	}
	return j
}

// rootFlags parses an operator command of the root group.
func rootFlags(env *cliEnv, name, usage string) (*flag.FlagSet, *adminFlags) {
	fs := newFlagSet(env, "root "+name, usage)
	af := &adminFlags{}
	af.register(fs, env)
	return fs, af
}

// parseRootArgs parses args and allows at most one positional argument
// (an authority ID), returned or "".
func parseRootArgs(fs *flag.FlagSet, af *adminFlags, args []string, optionalID bool) (string, error) {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return "", err
	}
	switch {
	case optionalID && len(pos) <= 1:
	case len(pos) == 0:
	default:
		if optionalID {
			fs.Usage()
			return "", fmt.Errorf("expected at most one authority ID; got %d arguments", len(pos))
		}
		if err := exactArgs(fs, pos); err != nil {
			return "", err
		}
	}
	if err := af.validate(); err != nil {
		return "", err
	}
	if len(pos) == 1 {
		return pos[0], nil
	}
	return "", nil
}

// listAuthorities calls ListAuthorities.
func listAuthorities(ctx context.Context, af *adminFlags) (*adminv1.ListAuthoritiesResponse, error) {
	resp, err := adminCall(ctx, af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListAuthoritiesResponse, error) {
		return c.ListAuthorities(ctx, &adminv1.ListAuthoritiesRequest{})
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func runRootList(ctx context.Context, env *cliEnv, args []string) error {
	fs, af := rootFlags(env, "list", "signet root list [--all] [-o json]")
	all := fs.Bool("all", false, "list intermediates and JWT keys too")
	if _, err := parseRootArgs(fs, af, args, false); err != nil {
		return err
	}
	resp, err := listAuthorities(ctx, af)
	if err != nil {
		return err
	}
	out := []authorityJSON{}
	rows := [][]string{}
	for _, a := range resp.Authorities {
		if !*all && a.Kind != "root" {
			continue
		}
		j := authorityToJSON(a)
		out = append(out, j)
		row := []string{j.ID, j.State, j.KeyType, j.NotBefore, j.NotAfter}
		if *all {
			row = []string{j.ID, j.Kind, j.State, j.KeyType, j.NotBefore, j.NotAfter, orDash(j.ParentID)}
		}
		rows = append(rows, row)
	}
	if af.output == "json" {
		return printJSON(env.stdout, out)
	}
	header := []string{"ID", "STATE", "KEY TYPE", "NOT BEFORE", "NOT AFTER"}
	if *all {
		header = []string{"ID", "KIND", "STATE", "KEY TYPE", "NOT BEFORE", "NOT AFTER", "PARENT"}
	}
	return printTable(env.stdout, header, rows)
}

func runRootStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs, af := rootFlags(env, "status", "signet root status [-o json]")
	if _, err := parseRootArgs(fs, af, args, false); err != nil {
		return err
	}
	resp, err := listAuthorities(ctx, af)
	if err != nil {
		return err
	}
	out := []authorityJSON{}
	rows := [][]string{}
	for _, a := range resp.Authorities {
		// In use: roots in the bundle and the signing intermediate.
		if a.Kind == "jwt" || a.State == "retired" || (a.Kind == "intermediate" && a.State != "active") {
			continue
		}
		j := authorityToJSON(a)
		out = append(out, j)
		applied := "-"
		if j.AgentsApplied != nil {
			applied = fmt.Sprintf("%d/%d", *j.AgentsApplied, *j.ConnectedAgents)
		}
		mark := ""
		if j.ExpiringSoon {
			mark = "EXPIRING"
		}
		rows = append(rows, []string{j.ID, j.Kind, j.State, j.KeyType, j.NotAfter, strconv.FormatInt(j.UnexpiredSVIDs, 10), applied, mark})
	}
	if af.output == "json" {
		return printJSON(env.stdout, out)
	}
	if err := printTable(env.stdout, []string{"ID", "KIND", "STATE", "KEY TYPE", "NOT AFTER", "SVIDS", "AGENTS APPLIED", "WARNING"}, rows); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "\nbundle revision %d\n", resp.BundleRevision)
	fmt.Fprintln(env.stdout, describeSchedule(resp.RootSchedule))
	return nil
}

// describeSchedule is the root status line about the automatic schedule.
func describeSchedule(s *adminv1.RootSchedule) string {
	if !s.GetAutomatic() {
		return "root rotation: manual (root_rotation: auto lets the server take the steps)"
	}
	line := "root rotation: automatic"
	switch {
	case s.GetNextStep() == "":
	case s.GetNextStepAt() == 0:
		line += "; next: " + s.GetNextStep() + " as soon as no current SVID chains to it"
	default:
		line += "; next: " + s.GetNextStep() + " at " + unixTime(s.GetNextStepAt())
	}
	if s.GetWaiting() != "" {
		line += "\nwaiting: " + s.GetWaiting()
	}
	return line
}

func runRootPrepare(ctx context.Context, env *cliEnv, args []string) error {
	fs, af := rootFlags(env, "prepare", "signet root prepare [--from-file CERT [--key KEY] [--chain FILE] [--csr-key-id ID]] [--csr-out FILE] [-o json]")
	var (
		fromFile = fs.String("from-file", "", "import this CA certificate (PEM) instead of creating a root: self-signed with --key, or issued by your PKI with --chain")
		keyFile  = fs.String("key", "", "private key (PEM, unencrypted) of --from-file; omit for a certificate issued for a --csr-out CSR")
		chain    = fs.String("chain", "", "PEM certificates above --from-file, up to the root(s) that join the trust bundle")
		csrKeyID = fs.String("csr-key-id", "", "key ID printed by --csr-out (default: the waiting CSR whose key matches)")
		csrOut   = fs.String("csr-out", "", "write a CSR for a new key to this file, for an upstream CA to sign as signet's new root, then import the result with --from-file")
	)
	if _, err := parseRootArgs(fs, af, args, false); err != nil {
		return err
	}
	req := &adminv1.PrepareRootRequest{CsrKeyId: *csrKeyID}
	switch {
	case *csrOut != "":
		if *fromFile != "" || *keyFile != "" || *chain != "" || *csrKeyID != "" {
			return errors.New("--csr-out makes a new key: it cannot be combined with --from-file, --key, --chain or --csr-key-id")
		}
		req.CsrOnly = true
	case *fromFile != "":
		var err error
		if req.CertPem, err = os.ReadFile(*fromFile); err != nil {
			return fmt.Errorf("--from-file: %w", err)
		}
		if *keyFile != "" {
			if req.KeyPem, err = os.ReadFile(*keyFile); err != nil {
				return fmt.Errorf("--key: %w", err)
			}
		}
		if *chain != "" {
			if req.ChainPem, err = os.ReadFile(*chain); err != nil {
				return fmt.Errorf("--chain: %w", err)
			}
		}
	case *keyFile != "" || *chain != "" || *csrKeyID != "":
		return errors.New("--key, --chain and --csr-key-id go with --from-file")
	}
	resp, err := adminCall(ctx, af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.PrepareRootResponse, error) {
		return c.PrepareRoot(ctx, req)
	})
	if err != nil {
		return err
	}
	if req.CsrOnly {
		if err := os.WriteFile(*csrOut, resp.CsrPem, 0o644); err != nil {
			return fmt.Errorf("writing CSR (key ID %s): %w", resp.CsrKeyId, err)
		}
		if af.output == "json" {
			return printJSON(env.stdout, map[string]string{"csr_key_id": resp.CsrKeyId, "csr_file": *csrOut})
		}
		fmt.Fprintln(env.stdout, resp.CsrKeyId)
		fmt.Fprintf(env.stderr, "wrote CSR to %s (key ID %s); have your CA sign it as a CA certificate, then run\n  signet root prepare --from-file CERT --chain CHAIN\n", *csrOut, resp.CsrKeyId)
		return nil
	}
	j := authorityToJSON(resp.Authority)
	if af.output == "json" {
		return printJSON(env.stdout, j)
	}
	fmt.Fprintln(env.stdout, j.ID)
	fmt.Fprintf(env.stderr, "prepared root %s (not after %s); it is in the trust bundle now.\nWhen `signet root status` shows every agent has applied it, run: signet root activate %s\n", j.ID, j.NotAfter, j.ID)
	return nil
}

func runRootActivate(ctx context.Context, env *cliEnv, args []string) error {
	fs, af := rootFlags(env, "activate", "signet root activate [ID] [--force] [--rotate-now] [-o json]")
	force := fs.Bool("force", false, "activate even though some connected agents have not applied the bundle holding the root (audited)")
	rotateNow := fs.Bool("rotate-now", false, "make agents re-mint every SVID now, spread over a few seconds, instead of at their half-life")
	id, err := parseRootArgs(fs, af, args, true)
	if err != nil {
		return err
	}
	resp, err := adminCall(ctx, af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ActivateRootResponse, error) {
		return c.ActivateRoot(ctx, &adminv1.ActivateRootRequest{Id: id, Force: *force, RotateNow: *rotateNow})
	})
	if err != nil {
		return err
	}
	j := authorityToJSON(resp.Authority)
	if af.output == "json" {
		return printJSON(env.stdout, j)
	}
	fmt.Fprintln(env.stdout, j.ID)
	how := "SVIDs move to it at their normal half-life"
	if *rotateNow {
		how = "agents are re-minting every SVID now"
	}
	fmt.Fprintf(env.stderr, "activated root %s: new SVIDs chain to it and %s; the previous root is retiring.\nOnce no current SVID chains to the old root, run: signet root retire\n", j.ID, how)
	return nil
}

func runRootRetire(ctx context.Context, env *cliEnv, args []string) error {
	fs, af := rootFlags(env, "retire", "signet root retire [ID] [--force] [-o json]")
	force := fs.Bool("force", false, "retire even though current SVIDs still chain to the root (audited); they stop being trusted")
	id, err := parseRootArgs(fs, af, args, true)
	if err != nil {
		return err
	}
	resp, err := adminCall(ctx, af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.RetireRootResponse, error) {
		return c.RetireRoot(ctx, &adminv1.RetireRootRequest{Id: id, Force: *force})
	})
	if err != nil {
		return err
	}
	j := authorityToJSON(resp.Authority)
	if af.output == "json" {
		return printJSON(env.stdout, j)
	}
	fmt.Fprintln(env.stdout, j.ID)
	fmt.Fprintf(env.stderr, "retired root %s: it has left the trust bundle\n", j.ID)
	return nil
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
