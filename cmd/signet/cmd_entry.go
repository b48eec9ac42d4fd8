package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func entryCommand() *command {
	return &command{name: "entry", summary: "registration entries", sub: []*command{
		{name: "create", summary: "register a workload (or many with --file)", run: runEntryCreate},
		{name: "list", summary: "list entries", run: runEntryList},
		{name: "show", summary: "show one entry", run: runEntryShow},
		{name: "delete", summary: "delete an entry", run: runEntryDelete},
	}}
}

// entryJSON is the -o json shape of an entry (a contract), and also the
// shape of one item of `entry create --file`.
type entryJSON struct {
	ID        string   `json:"id,omitempty"`
	SPIFFEID  string   `json:"spiffe_id"`
	ParentID  string   `json:"parent_id"`
	Selectors []string `json:"selectors"`
	X509TTL   string   `json:"x509_ttl,omitempty"`
	JWTTTL    string   `json:"jwt_ttl,omitempty"`
	DNSNames  []string `json:"dns_names,omitempty"`
	Revision  int64    `json:"revision,omitempty"`
	CreatedAt string   `json:"created_at,omitempty"`
}

func entryToJSON(e *adminv1.Entry) entryJSON {
	return entryJSON{
		ID:        e.Id,
		SPIFFEID:  e.SpiffeId,
		ParentID:  e.ParentId,
		Selectors: nonNil(e.Selectors),
		X509TTL:   (time.Duration(e.X509TtlSeconds) * time.Second).String(),
		JWTTTL:    (time.Duration(e.JwtTtlSeconds) * time.Second).String(),
		DNSNames:  e.DnsNames,
		Revision:  e.Revision,
		CreatedAt: unixTime(e.CreatedAt),
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// readEntryFile parses an entries file: a YAML (or JSON) list of entries.
// Unknown keys are errors that name the key and the entry.
func readEntryFile(path string) ([]*adminv1.Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading entries file: %w", err)
	}
	return parseEntryFile(path, data)
}

func parseEntryFile(name string, data []byte) ([]*adminv1.Entry, error) {
	var items []entryJSON
	if err := yaml.UnmarshalStrict(data, &items); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: no entries in file", name)
	}
	out := make([]*adminv1.Entry, 0, len(items))
	for i, it := range items {
		if it.ID != "" || it.Revision != 0 || it.CreatedAt != "" {
			return nil, fmt.Errorf("%s: entry %d: id, revision and created_at are assigned by the server", name, i+1)
		}
		e := &adminv1.Entry{SpiffeId: it.SPIFFEID, ParentId: it.ParentID, Selectors: it.Selectors, DnsNames: it.DNSNames}
		for _, d := range []struct {
			key string
			val string
			dst *int64
		}{{"x509_ttl", it.X509TTL, &e.X509TtlSeconds}, {"jwt_ttl", it.JWTTTL, &e.JwtTtlSeconds}} {
			if d.val == "" {
				continue
			}
			ttl, err := time.ParseDuration(d.val)
			if err != nil {
				return nil, fmt.Errorf("%s: entry %d: %s %q is not a duration like 1h or 90s", name, i+1, d.key, d.val)
			}
			if ttl <= 0 || ttl%time.Second != 0 {
				return nil, fmt.Errorf("%s: entry %d: %s %q must be a positive whole number of seconds", name, i+1, d.key, d.val)
			}
			*d.dst = int64(ttl / time.Second)
		}
		out = append(out, e)
	}
	return out, nil
}

func runEntryCreate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "entry create", "signet entry create --spiffe-id ID --parent-id NODE_ID --selector unix:uid:1000 [--selector ...] [--x509-ttl 1h] [--dns NAME] | --file entries.yaml")
	var af adminFlags
	af.register(fs, env)
	var (
		selectors, dns stringList
		spiffeID       = fs.String("spiffe-id", "", "the workload's SPIFFE ID")
		parentID       = fs.String("parent-id", "", "SPIFFE ID of the agent that may mint it")
		x509TTL        = fs.Duration("x509-ttl", 0, "SVID lifetime (default 1h)")
		jwtTTL         = fs.Duration("jwt-ttl", 0, "JWT-SVID lifetime (default 5m)")
		file           = fs.String("file", "", "YAML or JSON file with a list of entries, created in one transaction")
	)
	fs.Var(&selectors, "selector", "type:value selector, repeatable (unix:uid, unix:gid, unix:user, unix:group, unix:path, unix:sha256)")
	fs.Var(&dns, "dns", "DNS SAN, repeatable")
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
	var entries []*adminv1.Entry
	if *file != "" {
		if *spiffeID != "" || *parentID != "" || len(selectors) > 0 || len(dns) > 0 || *x509TTL != 0 || *jwtTTL != 0 {
			return fmt.Errorf("--file cannot be combined with --spiffe-id, --parent-id, --selector, --dns or TTL flags")
		}
		if entries, err = readEntryFile(*file); err != nil {
			return err
		}
	} else {
		if *spiffeID == "" {
			return fmt.Errorf("--spiffe-id is required")
		}
		if *parentID == "" {
			return fmt.Errorf("--parent-id is required")
		}
		for _, d := range []struct {
			name string
			val  time.Duration
		}{{"--x509-ttl", *x509TTL}, {"--jwt-ttl", *jwtTTL}} {
			if d.val < 0 || d.val%time.Second != 0 {
				return fmt.Errorf("%s %s must be a positive whole number of seconds", d.name, d.val)
			}
		}
		entries = []*adminv1.Entry{{
			SpiffeId:       *spiffeID,
			ParentId:       *parentID,
			Selectors:      selectors,
			X509TtlSeconds: int64(*x509TTL / time.Second),
			JwtTtlSeconds:  int64(*jwtTTL / time.Second),
			DnsNames:       dns,
		}}
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.CreateEntriesResponse, error) {
		return c.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: entries})
	})
	if err != nil {
		return err
	}
	if af.output == "json" {
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

func runEntryList(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "entry list", "signet entry list [--spiffe-id ID] [--parent-id ID] [-o json]")
	var af adminFlags
	af.register(fs, env)
	spiffeID := fs.String("spiffe-id", "", "only entries with this SPIFFE ID")
	parentID := fs.String("parent-id", "", "only entries of this agent")
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
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListEntriesResponse, error) {
		return c.ListEntries(ctx, &adminv1.ListEntriesRequest{SpiffeId: *spiffeID, ParentId: *parentID})
	})
	if err != nil {
		return err
	}
	if af.output == "json" {
		out := make([]entryJSON, 0, len(resp.Entries))
		for _, e := range resp.Entries {
			out = append(out, entryToJSON(e))
		}
		return printJSON(env.stdout, out)
	}
	rows := make([][]string, 0, len(resp.Entries))
	for _, e := range resp.Entries {
		rows = append(rows, []string{e.Id, e.SpiffeId, e.ParentId, strings.Join(e.Selectors, ","), (time.Duration(e.X509TtlSeconds) * time.Second).String()})
	}
	return printTable(env.stdout, []string{"ID", "SPIFFE ID", "PARENT ID", "SELECTORS", "X509 TTL"}, rows)
}

func runEntryShow(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "entry show", "signet entry show ID [-o json]")
	var af adminFlags
	af.register(fs, env)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos, "ID"); err != nil {
		return err
	}
	if err := af.validate(); err != nil {
		return err
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.GetEntryResponse, error) {
		return c.GetEntry(ctx, &adminv1.GetEntryRequest{Id: pos[0]})
	})
	if err != nil {
		return err
	}
	e := entryToJSON(resp.Entry)
	if af.output == "json" {
		return printJSON(env.stdout, e)
	}
	rows := [][]string{
		{"ID", e.ID}, {"SPIFFE ID", e.SPIFFEID}, {"Parent ID", e.ParentID},
		{"Selectors", strings.Join(e.Selectors, ", ")}, {"X509 TTL", e.X509TTL}, {"JWT TTL", e.JWTTTL},
		{"DNS names", strings.Join(e.DNSNames, ", ")}, {"Revision", fmt.Sprint(e.Revision)}, {"Created", e.CreatedAt},
	}
	for _, r := range rows {
		fmt.Fprintf(env.stdout, "%-10s %s\n", r[0]+":", r[1])
	}
	return nil
}

func runEntryDelete(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "entry delete", "signet entry delete ID")
	var af adminFlags
	af.register(fs, env)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos, "ID"); err != nil {
		return err
	}
	if _, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.DeleteEntryResponse, error) {
		return c.DeleteEntry(ctx, &adminv1.DeleteEntryRequest{Id: pos[0]})
	}); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "deleted entry %s\n", pos[0])
	return nil
}
