package workloadapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/workloadapi"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

func TestFetchX509SVID(t *testing.T) {
	e := newEnv(t, nil)
	web := e.register(t, "e1", "/web", "", self)
	old := e.register(t, "e2", "/old", "", self)
	e.register(t, "e3", "/theirs", "", stranger)
	svid := e.mint(t, web)
	expired := e.ca.svidAt(t, old.SPIFFEID, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	if err := e.cache.SetSVID(old.ID, expired); err != nil {
		t.Fatal(err)
	}
	e.ready(t)

	// go-spiffe parses and checks everything (chain, key against leaf).
	x509ctx, err := e.client(t).FetchX509Context(testCtx(t))
	if err != nil {
		t.Fatalf("FetchX509Context: %v", err)
	}
	var got []string
	for _, s := range x509ctx.SVIDs {
		got = append(got, s.ID.String()+" #"+s.Certificates[0].SerialNumber.String())
	}
	want := []string{web.SPIFFEID.String() + " #" + svid.Certificates[0].SerialNumber.String()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SVIDs (-want +got):\n%s", diff)
	}
	b, err := x509ctx.Bundles.GetX509BundleForTrustDomain(td)
	if err != nil || !b.HasX509Authority(e.ca.root) {
		t.Errorf("bundle for %s: %v, %v; want one holding the root", td, b, err)
	}

	// The raw message, field by field.
	stream, err := e.raw(t).FetchX509SVID(withHeader(testCtx(t)), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if len(resp.Svids) != 1 {
		t.Fatalf("got %d SVIDs, want 1", len(resp.Svids))
	}
	m := resp.Svids[0]
	if m.SpiffeId != web.SPIFFEID.String() {
		t.Errorf("spiffe_id = %q, want %q", m.SpiffeId, web.SPIFFEID)
	}
	if !bytes.Equal(m.X509Svid, svid.Certificates[0].Raw) {
		t.Error("x509_svid is not the leaf's DER")
	}
	if !bytes.Equal(m.Bundle, e.ca.root.Raw) {
		t.Error("bundle is not the root's DER")
	}
	key, err := x509.ParsePKCS8PrivateKey(m.X509SvidKey)
	if err != nil {
		t.Fatalf("x509_svid_key is not PKCS#8: %v", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !signer.Public().(*ecdsa.PublicKey).Equal(svid.Certificates[0].PublicKey) {
		t.Error("x509_svid_key does not match the leaf's public key")
	}
	if len(resp.FederatedBundles) != 0 {
		t.Errorf("federated_bundles = %v, want none", resp.FederatedBundles)
	}
}

func TestX509SVIDPushes(t *testing.T) {
	e := newEnv(t, nil)
	web := e.register(t, "e1", "/web", "", self)
	e.mint(t, web)
	e.ready(t)

	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	w := x509Watcher{updates: make(chan *spiffewl.X509Context, 10)}
	go e.client(t).WatchX509Context(ctx, w)
	recv(t, "initial X.509 context", w.updates)

	// Rotation: the new SVID is pushed.
	rotated := e.mint(t, web)
	got := recv(t, "rotated SVID", w.updates)
	if s := got.DefaultSVID(); s.Certificates[0].SerialNumber.Cmp(rotated.Certificates[0].SerialNumber) != 0 {
		t.Errorf("after rotation: serial %v, want %v", s.Certificates[0].SerialNumber, rotated.Certificates[0].SerialNumber)
	}

	// A new root in the bundle is pushed.
	next := newCA(t).root
	e.setBundle(t, 2, e.ca.root, next)
	got = recv(t, "new bundle", w.updates)
	b, _ := got.Bundles.GetX509BundleForTrustDomain(td)
	if b == nil || !b.HasX509Authority(next) || !b.HasX509Authority(e.ca.root) {
		t.Errorf("after SetBundle: bundle %v, want both roots", b)
	}

	// A new identity for the workload is pushed.
	api := e.register(t, "e0", "/api", "", self)
	e.mint(t, api)
	got = recv(t, "second identity", w.updates)
	var ids []string
	for _, s := range got.SVIDs {
		ids = append(ids, s.ID.Path())
	}
	if diff := cmp.Diff([]string{"/api", "/web"}, ids); diff != "" {
		t.Errorf("SVIDs in entry ID order (-want +got):\n%s", diff)
	}
}

func TestBundleStreams(t *testing.T) {
	e := newEnv(t, nil)
	web := e.register(t, "e1", "/web", "", self)
	e.ready(t)
	raw := e.raw(t)
	ctx := withHeader(testCtx(t))

	// Bundles are served before the workload has any SVID.
	x509s, err := raw.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	jwts, err := raw.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	xr, err := x509s.Recv()
	if err != nil {
		t.Fatalf("FetchX509Bundles: %v", err)
	}
	if diff := cmp.Diff(map[string][]byte{td.IDString(): e.ca.root.Raw}, xr.Bundles); diff != "" {
		t.Errorf("X.509 bundles (-want +got):\n%s", diff)
	}
	jr, err := jwts.Recv()
	if err != nil {
		t.Fatalf("FetchJWTBundles: %v", err)
	}
	if got := jwtKeys(t, jr); !cmp.Equal(got, []string{"k1"}) {
		t.Errorf("JWT bundle keys = %v, want [k1]", got)
	}

	// An SVID appearing is no bundle change; a new root is.
	e.mint(t, web)
	next := newCA(t).root
	e.setBundle(t, 2, e.ca.root, next)
	xr, err = x509s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append([]byte{}, e.ca.root.Raw...), next.Raw...); !bytes.Equal(xr.Bundles[td.IDString()], want) {
		t.Error("second X.509 bundles message is not the two roots")
	}

	// A new JWT key is pushed on the JWT stream.
	jb := e.minter.jwtBundle()
	if err := jb.AddJWTAuthority("k2", newMinter(t).key.Public()); err != nil {
		t.Fatal(err)
	}
	if err := e.cache.SetBundle(e.cache.Lookup(nil).Bundle, jb, 3); err != nil {
		t.Fatal(err)
	}
	jr, err = jwts.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := jwtKeys(t, jr); !cmp.Equal(got, []string{"k1", "k2"}) {
		t.Errorf("JWT bundle keys = %v, want [k1 k2]", got)
	}

	// go-spiffe reads the same.
	set, err := e.client(t).FetchJWTBundles(testCtx(t))
	if err != nil {
		t.Fatalf("go-spiffe FetchJWTBundles: %v", err)
	}
	if b, ok := set.Get(td); !ok || !b.HasJWTAuthority("k2") {
		t.Errorf("go-spiffe JWT bundle set lacks k2: %v", set.Bundles())
	}
}

func jwtKeys(t *testing.T, r *workload.JWTBundlesResponse) []string {
	t.Helper()
	b, err := jwtbundle.Parse(td, r.Bundles[td.IDString()])
	if err != nil {
		t.Fatalf("parsing JWKS: %v", err)
	}
	return slices.Sorted(maps.Keys(b.JWTAuthorities()))
}

func TestHints(t *testing.T) {
	e := newEnv(t, nil)
	shared := spiffeid.RequireFromPath(td, "/shared")
	for _, en := range []cache.Entry{
		e.register(t, "a", "/a", "internal", self),
		e.register(t, "b", "/b", "internal", self), // same hint as a: left out
		e.register(t, "c", "/shared", "", self),
		e.register(t, "d", "/shared", "", self), // same SPIFFE ID as c
		e.register(t, "e", "/e", "external", self),
	} {
		e.mint(t, en)
	}
	e.ready(t)

	stream, err := e.raw(t).FetchX509SVID(withHeader(testCtx(t)), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range resp.Svids {
		got = append(got, s.SpiffeId+" "+s.Hint)
	}
	want := []string{
		"spiffe://example.org/a internal",
		shared.String() + " ",
		shared.String() + " ",
		"spiffe://example.org/e external",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("X.509 SVIDs (-want +got):\n%s", diff)
	}

	// JWT-SVIDs: one per SPIFFE ID, one per hint.
	jr, err := e.raw(t).FetchJWTSVID(withHeader(testCtx(t)), &workload.JWTSVIDRequest{Audience: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, s := range jr.Svids {
		got = append(got, s.SpiffeId+" "+s.Hint)
	}
	want = []string{"spiffe://example.org/a internal", shared.String() + " ", "spiffe://example.org/e external"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JWT-SVIDs (-want +got):\n%s", diff)
	}
}

func TestJWTSVID(t *testing.T) {
	e := newEnv(t, nil)
	web := e.register(t, "e1", "/web", "", self)
	e.register(t, "e2", "/api", "", self)
	e.register(t, "e3", "/theirs", "", stranger)
	e.ready(t)
	c := e.client(t)

	// No X509-SVID is needed for a JWT-SVID.
	svid, err := c.FetchJWTSVID(testCtx(t), jwtsvid.Params{Audience: "db", ExtraAudiences: []string{"cache"}, Subject: web.SPIFFEID})
	if err != nil {
		t.Fatalf("FetchJWTSVID: %v", err)
	}
	if svid.ID != web.SPIFFEID || !cmp.Equal(svid.Audience, []string{"db", "cache"}) {
		t.Errorf("JWT-SVID for %v %v, want %v [db cache]", svid.ID, svid.Audience, web.SPIFFEID)
	}
	all, err := c.FetchJWTSVIDs(testCtx(t), jwtsvid.Params{Audience: "db"})
	if err != nil {
		t.Fatalf("FetchJWTSVIDs: %v", err)
	}
	var ids []string
	for _, s := range all {
		ids = append(ids, s.ID.Path())
	}
	if diff := cmp.Diff([]string{"/web", "/api"}, ids); diff != "" {
		t.Errorf("all JWT-SVIDs in entry ID order (-want +got):\n%s", diff)
	}
	e.minter.mu.Lock()
	calls := e.minter.calls
	e.minter.mu.Unlock()
	if diff := cmp.Diff([]string{"e1 [db cache]", "e1 [db]", "e2 [db]"}, calls); diff != "" {
		t.Errorf("minter calls (-want +got):\n%s", diff)
	}

	// Validation, through go-spiffe and raw for the claims.
	if _, err := c.ValidateJWTSVID(testCtx(t), svid.Marshal(), "db"); err != nil {
		t.Errorf("ValidateJWTSVID: %v", err)
	}
	vr, err := e.raw(t).ValidateJWTSVID(withHeader(testCtx(t)), &workload.ValidateJWTSVIDRequest{Audience: "cache", Svid: svid.Marshal()})
	if err != nil {
		t.Fatalf("raw ValidateJWTSVID: %v", err)
	}
	if vr.SpiffeId != web.SPIFFEID.String() || vr.Claims.Fields["sub"].GetStringValue() != web.SPIFFEID.String() {
		t.Errorf("ValidateJWTSVID = %q with claims %v", vr.SpiffeId, vr.Claims)
	}
	if _, err := c.ValidateJWTSVID(testCtx(t), svid.Marshal(), "elsewhere"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ValidateJWTSVID for another audience: %v, want InvalidArgument", err)
	}
	// A token signed by a key outside the bundle is refused.
	forged, _ := newMinter(t).withID("x", web.SPIFFEID).MintJWTSVID(context.Background(), "x", []string{"db"})
	if _, err := c.ValidateJWTSVID(testCtx(t), forged, "db"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ValidateJWTSVID of a forged token: %v, want InvalidArgument", err)
	}
}

func (m *fakeMinter) withID(entryID string, id spiffeid.ID) *fakeMinter {
	m.ids[entryID] = id
	return m
}

// TestErrors checks each call's status codes against the SPIFFE Workload
// Endpoint and Workload API standards.
func TestErrors(t *testing.T) {
	type call func(ctx context.Context, c workload.SpiffeWorkloadAPIClient) error
	stream := func(recv func() error, err error) error {
		if err != nil {
			return err
		}
		return recv()
	}
	fetchX509 := func(ctx context.Context, c workload.SpiffeWorkloadAPIClient) error {
		s, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		return stream(func() error { _, err := s.Recv(); return err }, err)
	}
	fetchX509Bundles := func(ctx context.Context, c workload.SpiffeWorkloadAPIClient) error {
		s, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
		return stream(func() error { _, err := s.Recv(); return err }, err)
	}
	fetchJWTBundles := func(ctx context.Context, c workload.SpiffeWorkloadAPIClient) error {
		s, err := c.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
		return stream(func() error { _, err := s.Recv(); return err }, err)
	}
	fetchJWT := func(req *workload.JWTSVIDRequest) call {
		return func(ctx context.Context, c workload.SpiffeWorkloadAPIClient) error {
			_, err := c.FetchJWTSVID(ctx, req)
			return err
		}
	}
	validate := func(req *workload.ValidateJWTSVIDRequest) call {
		return func(ctx context.Context, c workload.SpiffeWorkloadAPIClient) error {
			_, err := c.ValidateJWTSVID(ctx, req)
			return err
		}
	}
	fetchWIT := func(ctx context.Context, c workload.SpiffeWorkloadAPIClient) error {
		s, err := c.FetchWITSVID(ctx, &workload.WITSVIDRequest{})
		return stream(func() error { _, err := s.Recv(); return err }, err)
	}
	aud := &workload.JWTSVIDRequest{Audience: []string{"db"}}
	validReq := &workload.ValidateJWTSVIDRequest{Audience: "db", Svid: "not.a.token"}
	all := map[string]call{
		"FetchX509SVID":    fetchX509,
		"FetchX509Bundles": fetchX509Bundles,
		"FetchJWTBundles":  fetchJWTBundles,
		"FetchJWTSVID":     fetchJWT(aud),
		"ValidateJWTSVID":  validate(validReq),
	}
	fetches := map[string]call{
		"FetchX509SVID":    fetchX509,
		"FetchX509Bundles": fetchX509Bundles,
		"FetchJWTBundles":  fetchJWTBundles,
		"FetchJWTSVID":     fetchJWT(aud),
	}

	tests := []struct {
		name      string
		calls     map[string]call
		header    string // "" for none
		attestor  workloadapi.Attestor
		notReady  bool
		selectors []string // of the one registered entry
		wantCode  codes.Code
		wantMsg   string
	}{
		{name: "no header", calls: all, wantCode: codes.InvalidArgument, wantMsg: "security header"},
		{name: "header not true", calls: all, header: "True", wantCode: codes.InvalidArgument, wantMsg: "security header"},
		{name: "not ready", calls: all, header: "true", notReady: true, wantCode: codes.Unavailable, wantMsg: "not ready"},
		{name: "unknown caller", calls: fetches, header: "true", selectors: []string{stranger}, wantCode: codes.PermissionDenied},
		{name: "entry needs more selectors", calls: fetches, header: "true", selectors: []string{self, "unix:path:/nowhere"}, wantCode: codes.PermissionDenied},
		{name: "attestation fails", calls: fetches, header: "true", attestor: failingAttestor{}, selectors: []string{self}, wantCode: codes.PermissionDenied, wantMsg: "attestation failed"},
		{
			name: "jwt request checks", header: "true", selectors: []string{self}, wantCode: codes.InvalidArgument,
			calls: map[string]call{
				"no audience":      fetchJWT(&workload.JWTSVIDRequest{}),
				"bad spiffe id":    fetchJWT(&workload.JWTSVIDRequest{Audience: []string{"db"}, SpiffeId: "http://x"}),
				"validate no aud":  validate(&workload.ValidateJWTSVIDRequest{Svid: "x.y.z"}),
				"validate no svid": validate(&workload.ValidateJWTSVIDRequest{Audience: "db"}),
				"validate garbage": validate(validReq),
			},
		},
		{
			name: "jwt for an identity not held", header: "true", selectors: []string{self}, wantCode: codes.PermissionDenied,
			calls: map[string]call{"FetchJWTSVID": fetchJWT(&workload.JWTSVIDRequest{Audience: []string{"db"}, SpiffeId: "spiffe://example.org/theirs"})},
		},
		{name: "WIT profile", header: "true", selectors: []string{self}, calls: map[string]call{"FetchWITSVID": fetchWIT}, wantCode: codes.Unimplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.attestor)
			if len(tt.selectors) > 0 {
				e.mint(t, e.register(t, "e1", "/web", "", tt.selectors...))
			}
			if !tt.notReady {
				e.ready(t)
			}
			c := e.raw(t)
			for name, call := range tt.calls {
				ctx := testCtx(t)
				if tt.header != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", tt.header)
				}
				err := call(ctx, c)
				if got := status.Code(err); got != tt.wantCode {
					t.Errorf("%s: %v, want %v", name, err, tt.wantCode)
					continue
				}
				if !strings.Contains(status.Convert(err).Message(), tt.wantMsg) {
					t.Errorf("%s: message %q, want containing %q", name, status.Convert(err).Message(), tt.wantMsg)
				}
			}
		})
	}
}

// TestErrorsThroughGoSPIFFE: go-spiffe's client sees the same codes.
func TestErrorsThroughGoSPIFFE(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client(t)
	if _, err := c.FetchX509SVID(testCtx(t)); status.Code(err) != codes.Unavailable {
		t.Errorf("before the bundle: %v, want Unavailable", err)
	}
	e.ready(t)
	if _, err := c.FetchX509SVID(testCtx(t)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("no entries: %v, want PermissionDenied", err)
	}
	e.mint(t, e.register(t, "e1", "/theirs", "", stranger))
	if _, err := c.FetchX509SVID(testCtx(t)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("only another uid's entry: %v, want PermissionDenied", err)
	}
	if _, err := c.FetchJWTSVID(testCtx(t), jwtsvid.Params{Audience: "db"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("FetchJWTSVID: %v, want PermissionDenied", err)
	}
}

// TestStreamEnds: a stream ends with PermissionDenied when the workload
// loses its last entry, and the server lets go of streams whose clients
// leave.
func TestStreamEnds(t *testing.T) {
	e := newEnv(t, nil)
	web := e.register(t, "e1", "/web", "", self)
	e.mint(t, web)
	e.ready(t)
	raw := e.raw(t)

	s, err := raw.FetchX509SVID(withHeader(testCtx(t)), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	e.cache.ApplyEntries(true, nil, nil)
	if _, err := s.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Errorf("after the entry was deleted: %v, want PermissionDenied", err)
	}

	e.mint(t, e.register(t, "e1", "/web", "", self))
	waitFor(t, "the ended stream to be released", func() bool { return workloadapi.OpenStreams(e.srv) == 0 })
	const n = 25
	ctx, cancel := context.WithCancel(withHeader(testCtx(t)))
	for i := 0; i < n; i++ {
		s, err := raw.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		js, err := raw.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if got := workloadapi.OpenStreams(e.srv); got != 2*n {
		t.Errorf("open streams = %d, want %d", got, 2*n)
	}
	cancel()
	waitFor(t, "all streams to end", func() bool { return workloadapi.OpenStreams(e.srv) == 0 })
}

// TestJWTAudienceLimits: audiences past the documented limits are refused
// with InvalidArgument naming the limit, before anything is asked of the
// CA; requests at the limits go through.
func TestJWTAudienceLimits(t *testing.T) {
	many := func(n, size int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = strings.Repeat("a", size-1) + string(rune('a'+i%26))
		}
		return out
	}
	tests := []struct {
		name     string
		audience []string
		wantErr  string // "" for success
	}{
		{name: "at the limits", audience: many(nodeapi.MaxJWTAudiences, nodeapi.MaxJWTAudienceBytes)},
		{name: "one audience too many", audience: many(nodeapi.MaxJWTAudiences+1, 8), wantErr: fmt.Sprintf("exceed the limit of %d per JWT-SVID", nodeapi.MaxJWTAudiences)},
		{name: "thousands of audiences", audience: many(5000, 8), wantErr: "5000 audiences exceed the limit"},
		{name: "audience one byte too long", audience: []string{"db", strings.Repeat("x", nodeapi.MaxJWTAudienceBytes+1)}, wantErr: fmt.Sprintf("audience 2 is %d bytes, over the limit of %d", nodeapi.MaxJWTAudienceBytes+1, nodeapi.MaxJWTAudienceBytes)},
		{name: "empty audience", audience: []string{"db", ""}, wantErr: "audience 2 is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.mint(t, e.register(t, "e1", "/web", "", self))
			e.ready(t)
			resp, err := e.raw(t).FetchJWTSVID(withHeader(testCtx(t)), &workload.JWTSVIDRequest{Audience: tt.audience})
			e.minter.mu.Lock()
			calls := len(e.minter.calls)
			e.minter.mu.Unlock()
			if tt.wantErr == "" {
				if err != nil || len(resp.GetSvids()) != 1 || calls != 1 {
					t.Fatalf("FetchJWTSVID at the limits = %v, %v (%d minter calls); want one token", resp, err, calls)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.wantErr) {
				t.Fatalf("FetchJWTSVID = %v, want InvalidArgument containing %q", err, tt.wantErr)
			}
			if calls != 0 {
				t.Errorf("%d minter calls for a refused request, want none", calls)
			}
		})
	}
}
