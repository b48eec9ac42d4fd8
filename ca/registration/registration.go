// Package registration validates what operators register: SPIFFE IDs,
// selectors and entries. The admin API runs every entry through Validate
// before anything is stored, so the store only ever holds entries an agent
// can act on, and an operator's mistake gets an error that names it.
package registration

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/internal/nodeapi"
)

// Limits on what an entry may ask for.
const (
	// MaxX509TTL caps an entry's SVID lifetime: SVIDs are meant to be
	// short-lived, and anything longer belongs to an upstream PKI.
	MaxX509TTL = 7 * 24 * time.Hour
	// MinX509TTL keeps rotation (at half life) from turning into a busy loop.
	MinX509TTL = 10 * time.Second
	// DefaultX509TTL is DESIGN.md's workload SVID default.
	DefaultX509TTL = time.Hour
	// DefaultJWTTTL is short: JWT-SVIDs are bearer tokens.
	DefaultJWTTTL = 5 * time.Minute
	// MaxJWTTTL caps JWT-SVID lifetime for the same reason.
	MaxJWTTTL = 24 * time.Hour
	// MaxSelectors, MaxSelectorBytes and MaxDNSNames bound an entry's
	// size: at the limits (with SPIFFE IDs at theirs) an entry is about
	// 20 KiB stored, well inside store.MaxRecordBytes, and its audit
	// record (which lists the selectors) inside the audit log's 16 KiB.
	MaxSelectors     = 32
	MaxSelectorBytes = 256
	MaxDNSNames      = 32
	// MaxFederatesWith bounds the trust domains one entry federates with.
	MaxFederatesWith = 32
	// MaxDNSNameBytes is DNS's own limit on a name.
	MaxDNSNameBytes = 253
)

// ReservedPath is the path prefix of signet's own identities (server and
// agents); workloads may not be registered under it.
const ReservedPath = "/signet"

// Error is a validation failure; its message names the offending field and
// value, ready to show to an operator.
type Error struct {
	Field string
	Value string
	Msg   string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Msg)
}

func invalid(field, value, format string, args ...any) error {
	return &Error{Field: field, Value: value, Msg: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err is a validation failure (an operator's
// input error, as opposed to a server fault).
func IsInvalid(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// ParseID parses s as a SPIFFE ID of trust domain td. Unlike
// spiffeid.FromString it explains what is wrong in operator terms.
func ParseID(field, s string, td spiffeid.TrustDomain) (spiffeid.ID, error) {
	if s == "" {
		return spiffeid.ID{}, invalid(field, s, "is required")
	}
	if len(s) > nodeapi.MaxSPIFFEIDBytes {
		return spiffeid.ID{}, invalid(field, "", "is %d bytes, over the SPIFFE limit of %d", len(s), nodeapi.MaxSPIFFEIDBytes)
	}
	if !strings.HasPrefix(s, "spiffe://") {
		return spiffeid.ID{}, invalid(field, s, "must start with spiffe://")
	}
	rest := strings.TrimPrefix(s, "spiffe://")
	if tdLen := len(rest) - len(rest[strings.IndexByte(rest+"/", '/'):]); tdLen > nodeapi.MaxTrustDomainBytes {
		return spiffeid.ID{}, invalid(field, "", "trust domain is %d bytes, over the SPIFFE limit of %d", tdLen, nodeapi.MaxTrustDomainBytes)
	}
	if strings.Contains(s, "%") {
		return spiffeid.ID{}, invalid(field, s, "percent-encoding is not allowed in SPIFFE IDs")
	}
	if strings.ContainsAny(rest, "?#") {
		return spiffeid.ID{}, invalid(field, s, "query and fragment are not allowed in SPIFFE IDs")
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		for seg := range strings.SplitSeq(rest[i+1:], "/") {
			switch seg {
			case "":
				return spiffeid.ID{}, invalid(field, s, "path has an empty segment (a double or trailing slash)")
			case ".", "..":
				return spiffeid.ID{}, invalid(field, s, "path has a dot segment")
			}
		}
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, invalid(field, s, "malformed SPIFFE ID: %v", err)
	}
	if id.TrustDomain() != td {
		return spiffeid.ID{}, invalid(field, s, "trust domain %q is not this server's trust domain %q", id.TrustDomain().Name(), td.Name())
	}
	return id, nil
}

// ParseWorkloadID parses the SPIFFE ID of a registration entry: in td, with
// a non-empty path outside ReservedPath.
func ParseWorkloadID(s string, td spiffeid.TrustDomain) (spiffeid.ID, error) {
	id, err := ParseID("spiffe_id", s, td)
	if err != nil {
		return id, err
	}
	if id.Path() == "" {
		return spiffeid.ID{}, invalid("spiffe_id", s, "a workload ID needs a path; the bare trust domain names the trust domain itself")
	}
	if id.Path() == ReservedPath || strings.HasPrefix(id.Path(), ReservedPath+"/") {
		return spiffeid.ID{}, invalid("spiffe_id", s, "the path %s/ is reserved for signet's own server and agents", ReservedPath)
	}
	return id, nil
}

// AgentPathPrefix is the path prefix of every agent's SPIFFE ID.
const AgentPathPrefix = ReservedPath + "/agent/"

// IsAgentID reports whether id names a signet agent.
func IsAgentID(id spiffeid.ID) bool {
	return strings.HasPrefix(id.Path(), AgentPathPrefix)
}

// ClusterPathPrefix is the path prefix of a Kubernetes cluster's SPIFFE
// ID: as an entry's parent, it names every node attested in the cluster.
const ClusterPathPrefix = ReservedPath + "/cluster/"

// ParseParentID parses an entry's parent: the SPIFFE ID of an agent, or of
// a Kubernetes cluster (spiffe://<td>/signet/cluster/<name>: every node
// attested in it).
func ParseParentID(s string, td spiffeid.TrustDomain) (spiffeid.ID, error) {
	id, err := ParseID("parent_id", s, td)
	if err != nil {
		return id, err
	}
	if cluster, ok := strings.CutPrefix(id.Path(), ClusterPathPrefix); ok {
		if err := ParsePathSegment("parent_id", cluster); err != nil {
			return spiffeid.ID{}, invalid("parent_id", s, "the cluster name must be 1-128 letters, digits, dots, dashes or underscores")
		}
		return id, nil
	}
	if !IsAgentID(id) {
		return spiffeid.ID{}, invalid("parent_id", s, "must be an agent's SPIFFE ID (spiffe://%s%s...) or a cluster's (spiffe://%s%s<name>)", td.Name(), AgentPathPrefix, td.Name(), ClusterPathPrefix)
	}
	return id, nil
}

// The patterns are compiled on first use, not at init: every signet
// process links this package, and only the CA and a few commands check
// entries (dnsLabelRE alone is tens of KB compiled; issue 19).
var (
	hexSHA256  = lazyRegexp(`^[0-9a-f]{64}$`)
	unixName   = lazyRegexp(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$`)
	pathSegRE  = lazyRegexp(`^[A-Za-z0-9._-]+$`)
	dnsLabelRE = lazyRegexp(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?|\*)$`)
)

// lazyRegexp returns a function that compiles expr once, on its first
// call.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// SelectorTypes lists the selector types the agent's attestors produce,
// with a check for each value.
var selectorTypes = map[string]func(string) error{
	"unix:uid":    checkUint,
	"unix:gid":    checkUint,
	"unix:user":   checkUnixName,
	"unix:group":  checkUnixName,
	"unix:path":   checkAbsPath,
	"unix:sha256": checkSHA256,
	// Kubernetes workloads (the agent's k8s attestor).
	"k8s:ns":              checkAny,
	"k8s:sa":              checkAny,
	"k8s:pod-name":        checkAny,
	"k8s:pod-uid":         checkAny,
	"k8s:pod-label":       checkKeyValue,
	"k8s:container-name":  checkAny,
	"k8s:container-image": checkAny,
	"k8s:node-name":       checkAny,
	// Kubernetes nodes (the CA's k8s_psat attestor).
	"k8s_psat:cluster":    checkAny,
	"k8s_psat:node-name":  checkAny,
	"k8s_psat:agent_ns":   checkAny,
	"k8s_psat:agent_sa":   checkAny,
	"k8s_psat:node-label": checkKeyValue,
}

// checkAny accepts any non-empty value (ParseSelector refuses empty ones).
func checkAny(string) error { return nil }

// checkKeyValue checks a label selector's value: "<key>:<value>".
func checkKeyValue(v string) error {
	if k, _, ok := strings.Cut(v, ":"); !ok || k == "" {
		return errors.New("must be <key>:<value>")
	}
	return nil
}

func checkUint(v string) error {
	if _, err := strconv.ParseUint(v, 10, 32); err != nil {
		return errors.New("must be a decimal number")
	}
	return nil
}

func checkUnixName(v string) error {
	if !unixName().MatchString(v) || len(v) > 256 {
		return errors.New("is not a valid user or group name")
	}
	return nil
}

func checkAbsPath(v string) error {
	if !strings.HasPrefix(v, "/") {
		return errors.New("must be an absolute path")
	}
	return nil
}

func checkSHA256(v string) error {
	if !hexSHA256().MatchString(v) {
		return errors.New("must be 64 lower-case hex digits")
	}
	return nil
}

// SelectorTypes returns the known selector types, sorted.
func SelectorTypes() []string {
	ts := make([]string, 0, len(selectorTypes))
	for t := range selectorTypes {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// ParseSelector checks one "type:value" selector, for example
// "unix:uid:1000".
func ParseSelector(s string) error {
	if len(s) > MaxSelectorBytes {
		return invalid("selector", s[:32]+"...", "is %d bytes, over the limit of %d", len(s), MaxSelectorBytes)
	}
	i := strings.LastIndex(s, ":")
	// The type itself holds a colon ("unix:uid"); split after the second.
	if first := strings.IndexByte(s, ':'); first >= 0 {
		if second := strings.IndexByte(s[first+1:], ':'); second >= 0 {
			i = first + 1 + second
		} else {
			i = -1
		}
	}
	if i < 0 {
		return invalid("selector", s, "must be type:value, for example unix:uid:1000")
	}
	typ, val := s[:i], s[i+1:]
	check, ok := selectorTypes[typ]
	if !ok {
		return invalid("selector", s, "unknown selector type %q (known: %s)", typ, strings.Join(SelectorTypes(), ", "))
	}
	if val == "" {
		return invalid("selector", s, "value is empty")
	}
	if err := check(val); err != nil {
		return invalid("selector", s, "%s value %v", typ, err)
	}
	return nil
}

// ParsePathSegment checks a name used as one SPIFFE ID path segment (a node
// name).
func ParsePathSegment(field, s string) error {
	if s == "" || s == "." || s == ".." || !pathSegRE().MatchString(s) || len(s) > 128 {
		return invalid(field, s, "must be 1-128 letters, digits, dots, dashes or underscores")
	}
	return nil
}

// Entry is an entry as an operator submits it.
type Entry struct {
	SPIFFEID  string
	ParentID  string
	Selectors []string
	X509TTL   time.Duration
	JWTTTL    time.Duration
	DNSNames  []string
	// FederatesWith are trust domain names ("other.org", or
	// "spiffe://other.org") whose bundles the workloads get.
	FederatesWith []string
	// AllowDNSWildcards accepts a wildcard first label ("*.example.org");
	// AllowDNSIPAddresses a DNS name that is an IP address. Both are
	// refused by default: a wildcard SVID speaks for every host under the
	// name, and an IP address is no host name.
	AllowDNSWildcards   bool
	AllowDNSIPAddresses bool
}

// Validate checks e and returns it normalized: TTLs defaulted, selectors
// sorted and deduplicated, DNS names lower-cased.
func Validate(e Entry, td spiffeid.TrustDomain) (Entry, error) {
	if _, err := ParseWorkloadID(e.SPIFFEID, td); err != nil {
		return e, err
	}
	if _, err := ParseParentID(e.ParentID, td); err != nil {
		return e, err
	}
	if len(e.Selectors) == 0 {
		return e, invalid("selectors", "", "at least one selector is required")
	}
	if len(e.Selectors) > MaxSelectors {
		return e, invalid("selectors", "", "at most %d selectors are allowed, got %d", MaxSelectors, len(e.Selectors))
	}
	for _, s := range e.Selectors {
		if err := ParseSelector(s); err != nil {
			return e, err
		}
	}
	sels := slices.Clone(e.Selectors)
	slices.Sort(sels)
	e.Selectors = slices.Compact(sels)

	switch {
	case e.X509TTL == 0:
		e.X509TTL = DefaultX509TTL
	case e.X509TTL < MinX509TTL:
		return e, invalid("x509_ttl", e.X509TTL.String(), "is below the minimum of %s", MinX509TTL)
	case e.X509TTL > MaxX509TTL:
		return e, invalid("x509_ttl", e.X509TTL.String(), "is above the maximum of %s", MaxX509TTL)
	}
	switch {
	case e.JWTTTL == 0:
		e.JWTTTL = DefaultJWTTTL
	case e.JWTTTL < 0 || e.JWTTTL > MaxJWTTTL:
		return e, invalid("jwt_ttl", e.JWTTTL.String(), "must be between 0 and %s", MaxJWTTTL)
	}

	if len(e.DNSNames) > MaxDNSNames {
		return e, invalid("dns_names", "", "at most %d DNS names are allowed, got %d", MaxDNSNames, len(e.DNSNames))
	}
	names := make([]string, 0, len(e.DNSNames))
	for _, n := range e.DNSNames {
		n = strings.ToLower(n)
		if err := checkDNSName(n, e.AllowDNSWildcards, e.AllowDNSIPAddresses); err != nil {
			return e, invalid("dns_name", n, "%v", err)
		}
		names = append(names, n)
	}
	e.DNSNames = names

	if len(e.FederatesWith) > MaxFederatesWith {
		return e, invalid("federates_with", "", "at most %d trust domains are allowed, got %d", MaxFederatesWith, len(e.FederatesWith))
	}
	fed := make([]string, 0, len(e.FederatesWith))
	for _, s := range e.FederatesWith {
		ftd, err := spiffeid.TrustDomainFromString(s)
		if err != nil || (strings.HasPrefix(s, "spiffe://") && ftd.IDString() != s) {
			return e, invalid("federates_with", s, "is not a trust domain name (such as other.org)")
		}
		if ftd == td {
			return e, invalid("federates_with", s, "is this server's own trust domain, which every workload trusts already")
		}
		fed = append(fed, ftd.Name())
	}
	slices.Sort(fed)
	e.FederatesWith = slices.Compact(fed)
	if len(e.FederatesWith) == 0 {
		e.FederatesWith = nil
	}
	return e, nil
}

func checkDNSName(n string, allowWildcard, allowIP bool) error {
	if n == "" || len(n) > MaxDNSNameBytes {
		return fmt.Errorf("must be 1-%d characters", MaxDNSNameBytes)
	}
	if net.ParseIP(n) != nil && !allowIP {
		return errors.New("is an IP address, not a host name (allow it explicitly if you must)")
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if l == "*" && i != 0 {
			return errors.New("a wildcard may only be the first label")
		}
		if l == "*" && !allowWildcard {
			return errors.New("is a wildcard, which speaks for every host under it (allow wildcards explicitly if you must)")
		}
		if !dnsLabelRE().MatchString(l) {
			return fmt.Errorf("label %q is not a valid DNS label", l)
		}
	}
	return nil
}
