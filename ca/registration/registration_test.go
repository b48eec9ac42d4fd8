package registration

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

var workloadIDTests = []struct {
	name    string
	in      string
	wantErr string
}{
	{name: "valid", in: "spiffe://example.org/web"},
	{name: "valid nested", in: "spiffe://example.org/ns/prod/sa/web-1_a.b"},
	{name: "empty", in: "", wantErr: "is required"},
	{name: "no scheme", in: "example.org/web", wantErr: "must start with spiffe://"},
	{name: "wrong scheme", in: "https://example.org/web", wantErr: "must start with spiffe://"},
	{name: "foreign trust domain", in: "spiffe://other.org/web", wantErr: `trust domain "other.org" is not this server's trust domain "example.org"`},
	{name: "dot segment", in: "spiffe://example.org/a/./b", wantErr: "dot segment"},
	{name: "dot dot segment", in: "spiffe://example.org/a/../b", wantErr: "dot segment"},
	{name: "empty segment", in: "spiffe://example.org/a//b", wantErr: "empty segment"},
	{name: "trailing slash", in: "spiffe://example.org/a/", wantErr: "empty segment"},
	{name: "percent encoding", in: "spiffe://example.org/a%20b", wantErr: "percent-encoding"},
	{name: "root path", in: "spiffe://example.org", wantErr: "needs a path"},
	{name: "query", in: "spiffe://example.org/a?b=c", wantErr: "query and fragment"},
	{name: "fragment", in: "spiffe://example.org/a#b", wantErr: "query and fragment"},
	{name: "upper case trust domain", in: "spiffe://Example.org/web", wantErr: "malformed SPIFFE ID"},
	{name: "bad path char", in: "spiffe://example.org/a b", wantErr: "malformed SPIFFE ID"},
	{name: "port in trust domain", in: "spiffe://example.org:443/web", wantErr: "malformed SPIFFE ID"},
	{name: "userinfo", in: "spiffe://u@example.org/web", wantErr: "malformed SPIFFE ID"},
	{name: "reserved agent path", in: "spiffe://example.org/signet/agent/x", wantErr: "reserved"},
	{name: "reserved server path", in: "spiffe://example.org/signet", wantErr: "reserved"},
	{name: "signet-like but not reserved", in: "spiffe://example.org/signetx"},
}

func TestParseWorkloadID(t *testing.T) {
	for _, tt := range workloadIDTests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseWorkloadID(tt.in, td)
			checkErr(t, err, tt.wantErr)
			if err == nil && id.String() != tt.in {
				t.Errorf("got %q, want %q", id, tt.in)
			}
			if err != nil && !IsInvalid(err) {
				t.Errorf("error %v is not a validation error", err)
			}
		})
	}
}

func TestParseSelector(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr string
	}{
		{in: "unix:uid:1000"},
		{in: "unix:gid:0"},
		{in: "unix:user:www-data"},
		{in: "unix:group:staff"},
		{in: "unix:path:/usr/bin/envoy"},
		{in: "unix:sha256:" + strings.Repeat("ab", 32)},
		{in: "unix:uid:-1", wantErr: "decimal number"},
		{in: "unix:uid:abc", wantErr: "decimal number"},
		{in: "unix:uid:", wantErr: "value is empty"},
		{in: "unix:path:relative", wantErr: "absolute path"},
		{in: "unix:sha256:XYZ", wantErr: "64 lower-case hex"},
		{in: "k8s:ns:default"},
		{in: "k8s:sa:web"},
		{in: "k8s:pod-label:app:web"},
		{in: "k8s:pod-label:app.kubernetes.io/name:web:v2"},
		{in: "k8s:container-image:registry.example/app:1"},
		{in: "k8s_psat:cluster:prod"},
		{in: "k8s_psat:node-label:topology.kubernetes.io/zone:a"},
		{in: "k8s:pod-label:app", wantErr: "<key>:<value>"},
		{in: "k8s:pod-label::web", wantErr: "<key>:<value>"},
		{in: "k8s:namespace:default", wantErr: `unknown selector type "k8s:namespace"`},
		{in: "uid", wantErr: "must be type:value"},
		{in: "unix:uid", wantErr: "must be type:value"},
		{in: "unix:user:bad name", wantErr: "not a valid user"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			checkErr(t, ParseSelector(tt.in), tt.wantErr)
		})
	}
}

func TestValidate(t *testing.T) {
	base := Entry{
		SPIFFEID:  "spiffe://example.org/web",
		ParentID:  "spiffe://example.org/signet/agent/join_token/node1",
		Selectors: []string{"unix:uid:1000", "unix:gid:1000", "unix:uid:1000"},
	}
	got, err := Validate(base, td)
	if err != nil {
		t.Fatal(err)
	}
	want := base
	want.Selectors = []string{"unix:gid:1000", "unix:uid:1000"}
	want.X509TTL = DefaultX509TTL
	want.JWTTTL = DefaultJWTTTL
	want.DNSNames = []string{}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("normalized entry mismatch (-want +got):\n%s", diff)
	}
	if base.Selectors[0] != "unix:uid:1000" {
		t.Error("Validate modified the caller's selectors")
	}

	for _, tt := range []struct {
		name    string
		mod     func(*Entry)
		wantErr string
	}{
		{name: "ttl above max", mod: func(e *Entry) { e.X509TTL = MaxX509TTL + time.Second }, wantErr: "above the maximum"},
		{name: "ttl below min", mod: func(e *Entry) { e.X509TTL = time.Second }, wantErr: "below the minimum"},
		{name: "negative ttl", mod: func(e *Entry) { e.X509TTL = -time.Hour }, wantErr: "below the minimum"},
		{name: "no selectors", mod: func(e *Entry) { e.Selectors = nil }, wantErr: "at least one selector"},
		{name: "unknown selector", mod: func(e *Entry) { e.Selectors = []string{"docker:label:x"} }, wantErr: "unknown selector type"},
		{name: "parent not an agent", mod: func(e *Entry) { e.ParentID = "spiffe://example.org/web" }, wantErr: "must be an agent's SPIFFE ID"},
		{name: "parent foreign", mod: func(e *Entry) { e.ParentID = "spiffe://other.org/signet/agent/x" }, wantErr: "not this server's trust domain"},
		{name: "parent a cluster", mod: func(e *Entry) { e.ParentID = "spiffe://example.org/signet/cluster/prod" }},
		{name: "parent a cluster path", mod: func(e *Entry) { e.ParentID = "spiffe://example.org/signet/cluster/prod/x" }, wantErr: "cluster name must be"},
		{name: "parent k8s node", mod: func(e *Entry) { e.ParentID = "spiffe://example.org/signet/agent/k8s_psat/prod/0b9c" }},
		{name: "bad dns", mod: func(e *Entry) { e.DNSNames = []string{"a..b"} }, wantErr: "not a valid DNS label"},
		{name: "wildcard not first", mod: func(e *Entry) { e.DNSNames = []string{"a.*.b"} }, wantErr: "wildcard"},
		{name: "root path id", mod: func(e *Entry) { e.SPIFFEID = "spiffe://example.org" }, wantErr: "needs a path"},
		// Wildcards are refused unless allowed (issue 12; they were
		// accepted before).
		{name: "dns ok", mod: func(e *Entry) { e.DNSNames = []string{"Web.Example.org", "*.svc"}; e.AllowDNSWildcards = true }},
		{name: "wildcard refused", mod: func(e *Entry) { e.DNSNames = []string{"*.svc"} }, wantErr: `dns_name "*.svc": is a wildcard`},
		// federates_with names trust domains other than this one (issue 17).
		{name: "federates ok", mod: func(e *Entry) { e.FederatesWith = []string{"other.org", "spiffe://third.org", "other.org"} }},
		{name: "federates with own domain", mod: func(e *Entry) { e.FederatesWith = []string{"example.org"} }, wantErr: "own trust domain"},
		{name: "federates with a SPIFFE ID", mod: func(e *Entry) { e.FederatesWith = []string{"spiffe://other.org/web"} }, wantErr: `federates_with "spiffe://other.org/web": is not a trust domain name`},
		{name: "federates with garbage", mod: func(e *Entry) { e.FederatesWith = []string{"Other Org"} }, wantErr: "is not a trust domain name"},
		{name: "IP address refused", mod: func(e *Entry) { e.DNSNames = []string{"10.0.0.1"} }, wantErr: `dns_name "10.0.0.1": is an IP address`},
		{name: "IPv6 address refused", mod: func(e *Entry) { e.DNSNames = []string{"::1"} }, wantErr: `dns_name "::1": is an IP address`},
		{name: "IP address allowed", mod: func(e *Entry) { e.DNSNames = []string{"10.0.0.1"}; e.AllowDNSIPAddresses = true }},
		{name: "SPIFFE ID over 2048 bytes", mod: func(e *Entry) { e.SPIFFEID = "spiffe://example.org/" + strings.Repeat("a", 2048) }, wantErr: "spiffe_id: is 2069 bytes, over the SPIFFE limit of 2048"},
		{name: "SPIFFE ID at 2048 bytes", mod: func(e *Entry) { e.SPIFFEID = "spiffe://example.org/" + strings.Repeat("a", 2048-21) }},
		{name: "trust domain over 255 bytes", mod: func(e *Entry) { e.SPIFFEID = "spiffe://" + strings.Repeat("a", 256) + "/web" }, wantErr: "trust domain is 256 bytes, over the SPIFFE limit of 255"},
		{name: "selector over its limit", mod: func(e *Entry) { e.Selectors = []string{"unix:path:/" + strings.Repeat("p", MaxSelectorBytes)} }, wantErr: "is 267 bytes, over the limit of 256"},
		{name: "too many selectors", mod: func(e *Entry) { e.Selectors = manySelectors(MaxSelectors + 1) }, wantErr: "at most 32 selectors are allowed, got 33"},
		{name: "too many DNS names", mod: func(e *Entry) { e.DNSNames = manyNames(MaxDNSNames + 1) }, wantErr: "at most 32 DNS names are allowed, got 33"},
		{name: "DNS name over 253 bytes", mod: func(e *Entry) { e.DNSNames = []string{strings.Repeat("a.", 127)} }, wantErr: "must be 1-253 characters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			tt.mod(&e)
			_, err := Validate(e, td)
			checkErr(t, err, tt.wantErr)
		})
	}
	fed := base
	fed.FederatesWith = []string{"third.org", "spiffe://other.org", "third.org"}
	if got, err := Validate(fed, td); err != nil || !slices.Equal(got.FederatesWith, []string{"other.org", "third.org"}) {
		t.Errorf("federates_with normalized to %v (%v), want names, sorted, once each", got.FederatesWith, err)
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("got no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

// FuzzParseWorkloadID checks that whatever ParseWorkloadID accepts is a
// canonical SPIFFE ID in the trust domain, outside the reserved path.
func FuzzParseWorkloadID(f *testing.F) {
	for _, tt := range workloadIDTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseWorkloadID(s, td)
		if err != nil {
			if !IsInvalid(err) {
				t.Fatalf("error %v is not a validation error", err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("accepted %q but it round-trips to %q", s, id)
		}
		if id.TrustDomain() != td || id.Path() == "" || strings.HasPrefix(id.Path(), ReservedPath+"/") || strings.Contains(s, "%") {
			t.Fatalf("accepted invalid workload ID %q", s)
		}
	})
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"unix:uid:1000", "unix:path:/a", "k8s:x:y", "::", "unix:sha256:" + strings.Repeat("0", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := ParseSelector(s); err == nil {
			if strings.Count(s, ":") < 2 {
				t.Fatalf("accepted %q without type and value", s)
			}
		}
	})
}

func manySelectors(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "unix:uid:" + strconv.Itoa(i)
	}
	return out
}

func manyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "h" + strconv.Itoa(i) + ".example.org"
	}
	return out
}
