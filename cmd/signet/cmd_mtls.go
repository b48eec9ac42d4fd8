package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/internal/mtlspolicy"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func newMTLSCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("mtls", "mTLS modes (STRICT, PERMISSIVE, DISABLE) and readiness for STRICT", `  signet mtls status
  signet mtls set --mode STRICT --prefix spiffe://example.org/prod/ --dry-run   # what would it refuse?
  signet mtls set --mode STRICT --prefix spiffe://example.org/prod/`,
		newMTLSSetCommand(env),
		newMTLSListCommand(env),
		newMTLSDeleteCommand(env),
		newMTLSStatusCommand(env),
	)
}

// mtlsModes are the values of --mode.
var mtlsModes = []string{"STRICT", "PERMISSIVE", "DISABLE"}

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

// statusToJSON converts one workload's status; window is the seconds the
// counts cover.
func statusToJSON(w *adminv1.WorkloadMTLSStatus, window int64) mtlsStatusJSON {
	s := mtlsStatusJSON{
		SPIFFEID: w.SpiffeId, Mode: modeName(w.Mode), DryRun: w.DryRun,
		MTLSConnections: w.MtlsConnections, PlaintextConnections: w.PlaintextConnections, RefusedConnections: w.RefusedConnections,
		Ready: w.Ready, PlaintextSources: nonNil(w.PlaintextSources), Ports: []mtlsPortJSON{}, WindowSeconds: window,
	}
	for _, p := range w.Ports {
		s.Ports = append(s.Ports, mtlsPortJSON{
			Port: p.Port, Mode: modeName(p.Mode), DryRun: p.DryRun, Exempt: p.Exempt,
			MTLSConnections: p.MtlsConnections, PlaintextConnections: p.PlaintextConnections, RefusedConnections: p.RefusedConnections,
		})
	}
	return s
}

// statusMode is the MODE cell of a workload: its mode and the ports that
// differ.
func statusMode(s mtlsStatusJSON) string {
	mode := s.Mode
	if s.DryRun {
		mode += " (dry run)"
	}
	for _, p := range s.Ports {
		if p.Mode != s.Mode || p.DryRun != s.DryRun || p.Exempt {
			mode += fmt.Sprintf(", %d:%s", p.Port, portMode(p))
		}
	}
	return mode
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
