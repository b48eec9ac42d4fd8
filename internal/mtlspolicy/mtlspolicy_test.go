package mtlspolicy

import (
	"math/rand/v2"
	"strings"
	"testing"
)

const (
	web    = "spiffe://example.org/prod/web"
	legacy = "spiffe://example.org/prod/legacy"
	other  = "spiffe://example.org/dev/tool"
)

func pol(scope string, port uint32, mode Mode, opts ...func(*Policy)) Policy {
	p := Policy{Port: port, Mode: mode}
	switch {
	case strings.HasSuffix(scope, "/"):
		p.Prefix = scope
	case scope != "":
		p.SPIFFEID = scope
	}
	for _, o := range opts {
		o(&p)
	}
	p.ID = ID(p.SPIFFEID, p.Prefix, p.Port)
	return p
}

func exempting(ports ...uint32) func(*Policy) { return func(p *Policy) { p.ExemptPorts = ports } }
func dry(p *Policy)                           { p.DryRun = true }

func TestEffective(t *testing.T) {
	tests := []struct {
		name       string
		policies   []Policy
		id         string
		port       uint32
		wantMode   Mode
		wantDryRun bool
		wantExempt bool
	}{
		{name: "nothing set is permissive", id: web, port: 8080, wantMode: Permissive},
		{name: "trust-domain default", policies: []Policy{pol("", 0, Strict)}, id: web, port: 8080, wantMode: Strict},
		{
			name:     "prefix beats default",
			policies: []Policy{pol("", 0, Strict), pol("spiffe://example.org/prod/", 0, Disable)},
			id:       web, port: 8080, wantMode: Disable,
		},
		{
			name:     "prefix that does not match",
			policies: []Policy{pol("", 0, Strict), pol("spiffe://example.org/prod/", 0, Disable)},
			id:       other, port: 8080, wantMode: Strict,
		},
		{
			name:     "prefix matches whole segments only",
			policies: []Policy{pol("spiffe://example.org/pro/", 0, Strict)},
			id:       web, port: 8080, wantMode: Permissive,
		},
		{
			name: "longest prefix wins",
			policies: []Policy{
				pol("spiffe://example.org/", 0, Disable),
				pol("spiffe://example.org/prod/", 0, Strict),
				pol("spiffe://example.org/prod/web/", 0, Disable), // not a prefix of web itself
			},
			id: web, port: 8080, wantMode: Strict,
		},
		{
			name:     "exact ID beats the longest prefix",
			policies: []Policy{pol("spiffe://example.org/prod/", 0, Strict), pol(web, 0, Permissive), pol("", 0, Disable)},
			id:       web, port: 8080, wantMode: Permissive,
		},
		{
			name:     "exact ID of another workload",
			policies: []Policy{pol(legacy, 0, Disable), pol("", 0, Strict)},
			id:       web, port: 8080, wantMode: Strict,
		},
		{
			name:     "port policy wins for its port",
			policies: []Policy{pol(web, 0, Strict), pol(web, 9090, Permissive)},
			id:       web, port: 9090, wantMode: Permissive,
		},
		{
			name:     "port policy does not apply to other ports",
			policies: []Policy{pol(web, 0, Strict), pol(web, 9090, Permissive)},
			id:       web, port: 8080, wantMode: Strict,
		},
		{
			name:     "port policy of a wider scope wins over an every-port exact policy",
			policies: []Policy{pol(web, 0, Strict), pol("", 9090, Disable)},
			id:       web, port: 9090, wantMode: Disable,
		},
		{
			name:     "between port policies the more specific scope wins",
			policies: []Policy{pol("", 9090, Disable), pol("spiffe://example.org/prod/", 9090, Strict), pol(web, 9090, Permissive)},
			id:       web, port: 9090, wantMode: Permissive,
		},
		{
			name:     "port 0 asks about the workload as a whole",
			policies: []Policy{pol(web, 0, Strict), pol(web, 9090, Permissive)},
			id:       web, port: 0, wantMode: Strict,
		},
		{
			name:     "dry run comes from the winner",
			policies: []Policy{pol("", 0, Strict, dry), pol(web, 0, Strict)},
			id:       web, port: 8080, wantMode: Strict,
		},
		{
			name:     "dry run of the winner",
			policies: []Policy{pol("", 0, Permissive), pol(web, 0, Strict, dry)},
			id:       web, port: 8080, wantMode: Strict, wantDryRun: true,
		},
		{
			name:     "dry run only means something with STRICT",
			policies: []Policy{pol(web, 0, Permissive, dry)},
			id:       web, port: 8080, wantMode: Permissive,
		},
		{
			name:     "exempt port",
			policies: []Policy{pol(web, 0, Strict, exempting(15021))},
			id:       web, port: 15021, wantMode: Strict, wantExempt: true,
		},
		{
			name:     "exemption of the default survives a more specific policy",
			policies: []Policy{pol("", 0, Permissive, exempting(15021)), pol(web, 0, Strict)},
			id:       web, port: 15021, wantMode: Strict, wantExempt: true,
		},
		{
			name:     "exemption of another workload does not apply",
			policies: []Policy{pol(legacy, 0, Strict, exempting(15021)), pol("", 0, Strict)},
			id:       web, port: 15021, wantMode: Strict,
		},
		{
			name:     "nothing is exempt on port 0",
			policies: []Policy{pol(web, 0, Strict, exempting(15021))},
			id:       web, port: 0, wantMode: Strict,
		},
		{
			name:     "exempt port with nothing else set",
			policies: []Policy{pol("spiffe://example.org/prod/", 0, Disable, exempting(15021)), pol(web, 15021, Strict)},
			id:       web, port: 15021, wantMode: Strict, wantExempt: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The order of the set must not matter.
			r := rand.New(rand.NewPCG(uint64(len(tt.name)), 1))
			for range 4 {
				ps := append([]Policy(nil), tt.policies...)
				r.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
				mode, dryRun, exempt := Effective(ps, tt.id, tt.port)
				if mode != tt.wantMode || dryRun != tt.wantDryRun || exempt != tt.wantExempt {
					t.Fatalf("Effective(%s, %d) = (%s, dry run %v, exempt %v), want (%s, %v, %v)",
						tt.id, tt.port, mode, dryRun, exempt, tt.wantMode, tt.wantDryRun, tt.wantExempt)
				}
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr string
	}{
		{in: "STRICT", want: Strict},
		{in: "permissive", want: Permissive},
		{in: " Disable ", want: Disable},
		{in: "", wantErr: "unknown mode"},
		{in: "MUTUAL", wantErr: `unknown mode "MUTUAL"`},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseMode(%q) error = %v, want %q", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("ParseMode(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestID(t *testing.T) {
	a := ID(web, "", 0)
	if a != ID(web, "", 0) {
		t.Fatal("ID is not deterministic")
	}
	for _, other := range []string{ID(web, "", 8080), ID("", web, 0), ID("", "", 0), ID(legacy, "", 0)} {
		if other == a {
			t.Fatalf("ID collision: %s", a)
		}
	}
	if !strings.HasPrefix(a, "mp-") || len(a) != 15 {
		t.Fatalf("ID %q: want mp- and 12 hex digits", a)
	}
}

func FuzzEffective(f *testing.F) {
	f.Add(web, uint32(8080), "spiffe://example.org/prod/", uint32(0), uint32(8080))
	f.Add(legacy, uint32(0), "", uint32(9090), uint32(15021))
	f.Fuzz(func(t *testing.T, id string, port uint32, prefix string, polPort, exemptPort uint32) {
		if id == "" || strings.HasSuffix(id, "/") {
			t.Skip("not a SPIFFE ID")
		}
		ps := []Policy{
			pol("", 0, Permissive, exempting(exemptPort)),
			{Prefix: prefix, Port: polPort, Mode: Strict},
			pol(id, polPort, Disable),
		}
		mode, _, exempt := Effective(ps, id, port)
		// The exact-ID policy matches whenever its port does.
		if polPort == 0 || polPort == port {
			if mode != Disable {
				t.Fatalf("mode %s, want DISABLE from the exact policy", mode)
			}
		}
		if exempt != (port != 0 && port == exemptPort) {
			t.Fatalf("exempt = %v for port %d, exempt port %d", exempt, port, exemptPort)
		}
	})
}
