package mtlspolicy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Mode is how a workload's inbound connections are secured.
type Mode string

const (
	// Strict accepts mTLS only.
	Strict Mode = "STRICT"
	// Permissive accepts mTLS and plaintext, told apart by the first bytes.
	Permissive Mode = "PERMISSIVE"
	// Disable accepts plaintext only.
	Disable Mode = "DISABLE"
)

// Default is the mode when no policy matches.
const Default = Permissive

// ParseMode parses a mode name, in any case.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToUpper(strings.TrimSpace(s))); m {
	case Strict, Permissive, Disable:
		return m, nil
	}
	return "", fmt.Errorf("mtlspolicy: unknown mode %q: use STRICT, PERMISSIVE or DISABLE", s)
}

// Policy is one mTLS policy. At most one of SPIFFEID and Prefix is set;
// neither means the trust-domain default.
type Policy struct {
	ID string
	// SPIFFEID scopes the policy to one workload.
	SPIFFEID string
	// Prefix scopes the policy to the SPIFFE IDs starting with it; it ends
	// in "/".
	Prefix string
	// Port limits the policy to connections to that port; 0 means every
	// port.
	Port uint32
	Mode Mode
	// ExemptPorts pass plaintext in every mode (health checks). Only
	// every-port policies have them.
	ExemptPorts []uint32
	// DryRun (Strict only): let through what Strict would refuse, and
	// count it.
	DryRun bool
	// Revision is the store revision of the policy's last change.
	Revision int64
}

// Scope describes p's scope for people: "default", "prefix spiffe://td/a/"
// or the SPIFFE ID.
func (p Policy) Scope() string {
	switch {
	case p.SPIFFEID != "":
		return p.SPIFFEID
	case p.Prefix != "":
		return "prefix " + p.Prefix
	}
	return "default"
}

// ID is the identifier of the policy with this scope and port. It is
// derived from them, so setting a policy for a scope and port that already
// has one replaces it.
func ID(spiffeID, prefix string, port uint32) string {
	sum := sha256.Sum256([]byte(spiffeID + "\x00" + prefix + "\x00" + strconv.FormatUint(uint64(port), 10)))
	return "mp-" + hex.EncodeToString(sum[:6])
}

// scope kinds, least specific first.
const (
	scopeDefault = iota
	scopePrefix
	scopeExact
)

// rank orders matching policies: the greater rank wins.
type rank struct {
	portSpecific bool
	kind         int
	prefixLen    int
}

func compareRank(a, b rank) int {
	pa, pb := 0, 0
	if a.portSpecific {
		pa = 1
	}
	if b.portSpecific {
		pb = 1
	}
	return cmp.Or(cmp.Compare(pa, pb), cmp.Compare(a.kind, b.kind), cmp.Compare(a.prefixLen, b.prefixLen))
}

// matchScope reports whether p's scope covers spiffeID, and how
// specifically.
func matchScope(p *Policy, spiffeID string) (int, int, bool) {
	switch {
	case p.SPIFFEID != "":
		return scopeExact, 0, p.SPIFFEID == spiffeID
	case p.Prefix != "":
		return scopePrefix, len(p.Prefix), strings.HasPrefix(spiffeID, p.Prefix)
	}
	return scopeDefault, 0, true
}

// Effective returns the mode of spiffeID's inbound connections to port
// under policies (see the package documentation for the precedence), whether
// Strict is in dry run, and whether the port is exempt. It is a pure
// function of its arguments; policies is not modified.
func Effective(policies []Policy, spiffeID string, port uint32) (mode Mode, dryRun, exempt bool) {
	p, exempt := Winner(policies, spiffeID, port)
	if p == nil {
		return Default, false, exempt
	}
	return p.Mode, p.DryRun && p.Mode == Strict, exempt
}

// Winner returns the policy that decides spiffeID's mode on port (nil when
// none matches, and the mode is Default) and whether the port is exempt.
func Winner(policies []Policy, spiffeID string, port uint32) (*Policy, bool) {
	var (
		best     *Policy
		bestRank rank
		exempt   bool
	)
	for i := range policies {
		p := &policies[i]
		kind, plen, ok := matchScope(p, spiffeID)
		if !ok {
			continue
		}
		if p.Port == 0 && port != 0 && slices.Contains(p.ExemptPorts, port) {
			exempt = true
		}
		if p.Port != 0 && p.Port != port {
			continue
		}
		r := rank{portSpecific: p.Port != 0, kind: kind, prefixLen: plen}
		// Two policies never share a scope and port (their ID is the
		// same); the ID comparison only makes a broken set deterministic.
		if best == nil {
			best, bestRank = p, r
			continue
		}
		if c := compareRank(r, bestRank); c > 0 || (c == 0 && p.ID < best.ID) {
			best, bestRank = p, r
		}
	}
	return best, exempt
}

// Matches reports whether p's scope covers spiffeID (whatever the port).
func (p Policy) Matches(spiffeID string) bool {
	_, _, ok := matchScope(&p, spiffeID)
	return ok
}

// Compare orders policies for display: the default first, then prefixes,
// then SPIFFE IDs, each by name and then port.
func Compare(a, b Policy) int {
	ka, _, _ := matchScope(&a, "")
	kb, _, _ := matchScope(&b, "")
	return cmp.Or(cmp.Compare(ka, kb), cmp.Compare(a.SPIFFEID+a.Prefix, b.SPIFFEID+b.Prefix), cmp.Compare(a.Port, b.Port))
}
