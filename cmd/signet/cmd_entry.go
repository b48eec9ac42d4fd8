package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func newEntryCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("entry", "registration entries: which workloads get which SPIFFE IDs", `  signet entry create --spiffe-id spiffe://example.org/web \
      --parent-id spiffe://example.org/signet/agent/join_token/node1 --selector unix:uid:1000
  signet entry list -o json
  signet entry update ID --x509-ttl 2h`,
		newEntryCreateCommand(env),
		newEntryListCommand(env),
		newEntryShowCommand(env),
		newEntryUpdateCommand(env),
		newEntryDeleteCommand(env),
	)
}

// dnsAllowOptions are the flags that accept DNS names the server refuses by
// default; they apply to every entry of one request.
type dnsAllowOptions struct {
	wildcards, ipAddresses bool
}

func (o *dnsAllowOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.wildcards, "allow-dns-wildcards", false, "accept a wildcard DNS name (*.example.org)")
	fs.BoolVar(&o.ipAddresses, "allow-dns-ip-addresses", false, "accept a DNS name that is an IP address")
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
	// FederatesWith names the trust domains whose bundles the workloads
	// get (signet federation create).
	FederatesWith []string `json:"federates_with,omitempty"`
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

		FederatesWith: e.FederatesWith,
	}
}

// printEntry writes one entry as `entry show` does.
func printEntry(w io.Writer, output outputOption, e *adminv1.Entry) error {
	j := entryToJSON(e)
	if output.json() {
		return printJSON(w, j)
	}
	rows := [][]string{
		{"ID", j.ID}, {"SPIFFE ID", j.SPIFFEID}, {"Parent ID", j.ParentID},
		{"Selectors", strings.Join(j.Selectors, ", ")}, {"X509 TTL", j.X509TTL}, {"JWT TTL", j.JWTTTL},
		{"DNS names", strings.Join(j.DNSNames, ", ")}, {"Revision", fmt.Sprint(j.Revision)}, {"Created", j.CreatedAt},
	}
	if len(j.FederatesWith) > 0 {
		rows = append(rows, []string{"Federates", strings.Join(j.FederatesWith, ", ")})
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-10s %s\n", r[0]+":", r[1])
	}
	return nil
}

// ttlSeconds checks a TTL flag that was given: positive (leaving the flag
// out is how to get the server's default) and whole seconds.
func ttlSeconds(flag string, d time.Duration) (int64, error) {
	switch {
	case d <= 0:
		return 0, fmt.Errorf("--%s %s: must be positive (leave the flag out for the server's default)", flag, d)
	case d%time.Second != 0:
		return 0, fmt.Errorf("--%s %s: must be a whole number of seconds", flag, d)
	}
	return int64(d / time.Second), nil
}

// maxEntriesFile bounds an entries file (and what is read of stdin).
const maxEntriesFile = 64 << 20

// parseEntryFile parses an entries file: a YAML (or JSON) list of entries.
// Errors name the file, the line, the entry and the key.
func parseEntryFile(name string, data []byte) ([]*adminv1.Entry, error) {
	doc, err := cli.ParseYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if doc == nil {
		return nil, fmt.Errorf("%s: no entries in file", name)
	}
	seq, ok := doc.(*ast.SequenceNode)
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, cli.YAMLErrorf(doc, "an entries file is a list of entries (- spiffe_id: ...), not %s", cli.YAMLKind(doc)))
	}
	if len(seq.Values) == 0 {
		return nil, fmt.Errorf("%s: no entries in file", name)
	}
	out := make([]*adminv1.Entry, 0, len(seq.Values))
	for i, item := range seq.Values {
		e, err := parseEntryItem(item)
		if err != nil {
			if ye := (*cli.YAMLError)(nil); errors.As(err, &ye) && ye.Line > 0 {
				return nil, fmt.Errorf("%s: line %d: entry %d: %s", name, ye.Line, i+1, ye.Msg)
			}
			return nil, fmt.Errorf("%s: entry %d: %v", name, i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseEntryItem(item ast.Node) (*adminv1.Entry, error) {
	node, err := cli.UnwrapYAML(item)
	if err != nil {
		return nil, err
	}
	if node == nil {
		return nil, cli.YAMLErrorf(item, "an empty entry")
	}
	fields, err := cli.YAMLMapping(node, "an entry")
	if err != nil {
		return nil, err
	}
	var it entryJSON
	if err := cli.DecodeYAMLStruct(node, &it, "an entry"); err != nil {
		return nil, err
	}
	keyAt := func(key string) ast.Node {
		for _, f := range fields {
			if f.Key == key {
				return f.Node
			}
		}
		return node
	}
	for _, k := range []string{"id", "revision", "created_at"} {
		if n := keyAt(k); n != node {
			return nil, cli.YAMLErrorf(n, "%s is assigned by the server: leave it out", k)
		}
	}
	e := &adminv1.Entry{SpiffeId: it.SPIFFEID, ParentId: it.ParentID, Selectors: it.Selectors, DnsNames: it.DNSNames, FederatesWith: it.FederatesWith}
	for _, d := range []struct {
		key string
		val string
		dst *int64
	}{{"x509_ttl", it.X509TTL, &e.X509TtlSeconds}, {"jwt_ttl", it.JWTTTL, &e.JwtTtlSeconds}} {
		if d.val == "" {
			continue
		}
		ttl, err := cli.ParseDuration(d.val)
		if err != nil {
			return nil, cli.YAMLErrorf(keyAt(d.key), "%s: %v", d.key, err)
		}
		if ttl <= 0 || ttl%time.Second != 0 {
			return nil, cli.YAMLErrorf(keyAt(d.key), "%s %q must be a positive whole number of seconds", d.key, d.val)
		}
		*d.dst = int64(ttl / time.Second)
	}
	return e, nil
}
