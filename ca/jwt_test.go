package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/catest"
)

func TestSignJWTSVID(t *testing.T) {
	c, clk := newFakeCA(t)
	now := clk.Now()
	ctx := context.Background()
	aud := []string{"db", "cache"}
	token, exp, err := c.CA.SignJWTSVID(ctx, ca.JWTSVIDParams{SPIFFEID: workloadID, Audience: aud, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatalf("SignJWTSVID: %v", err)
	}
	if !exp.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("expiresAt = %v, want %v", exp, now.Add(10*time.Minute))
	}

	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	h := tok.Headers[0]
	if h.KeyID != c.JWTKey.ID {
		t.Errorf("kid = %q, want %q", h.KeyID, c.JWTKey.ID)
	}
	if h.Algorithm != string(jose.ES256) {
		t.Errorf("alg = %q, want ES256", h.Algorithm)
	}
	if typ := h.ExtraHeaders[jose.HeaderType]; typ != "JWT" {
		t.Errorf("typ = %v, want JWT", typ)
	}
	var claims jwt.Claims
	if err := tok.Claims(c.JWTKey.Signer.Public().(*ecdsa.PublicKey), &claims); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	if claims.Subject != workloadID.String() {
		t.Errorf("sub = %q", claims.Subject)
	}
	if diff := cmp.Diff(aud, []string(claims.Audience)); diff != "" {
		t.Errorf("aud (-want +got):\n%s", diff)
	}
	if claims.IssuedAt.Time() != now || claims.Expiry.Time() != exp {
		t.Errorf("iat %v exp %v, want %v and %v", claims.IssuedAt.Time(), claims.Expiry.Time(), now, exp)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{AnyAudience: []string{"db"}, Time: now}, 0); err != nil {
		t.Errorf("valid now for db: %v", err)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{AnyAudience: []string{"other"}, Time: now}, 0); err == nil {
		t.Errorf("valid for an audience it was not issued to")
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{AnyAudience: []string{"db"}, Time: exp.Add(time.Second)}, 0); err == nil {
		t.Errorf("valid after exp")
	}

	// go-spiffe, as a workload would, with the key in a JWT bundle.
	bundle := jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{c.JWTKey.ID: c.JWTKey.Signer.Public()})
	svid, err := jwtsvid.ParseAndValidate(token, bundle, []string{"cache"})
	if err != nil {
		t.Fatalf("jwtsvid.ParseAndValidate: %v", err)
	}
	if svid.ID != workloadID {
		t.Errorf("jwtsvid ID = %s", svid.ID)
	}
}

func TestSignJWTSVIDCappedAtKeyExpiry(t *testing.T) {
	c, _ := newFakeCA(t, catest.WithIntermediateTTL(3*time.Minute)) // the JWT key lives as long
	_, exp, err := c.CA.SignJWTSVID(context.Background(), ca.JWTSVIDParams{SPIFFEID: workloadID, Audience: []string{"db"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(c.JWTKey.NotAfter) {
		t.Errorf("exp = %v, want the key's NotAfter %v", exp, c.JWTKey.NotAfter)
	}
}

func TestSignJWTSVIDErrors(t *testing.T) {
	c, _ := newFakeCA(t)
	ctx := context.Background()
	tests := []struct {
		name string
		ca   *ca.CA
		p    ca.JWTSVIDParams
		want error
	}{
		{"missing audience", c.CA, ca.JWTSVIDParams{SPIFFEID: workloadID}, ca.ErrInvalidParams},
		{"empty audience", c.CA, ca.JWTSVIDParams{SPIFFEID: workloadID, Audience: []string{""}}, ca.ErrInvalidParams},
		{"foreign trust domain", c.CA, ca.JWTSVIDParams{SPIFFEID: spiffeid.RequireFromString("spiffe://other.org/x"), Audience: []string{"db"}}, ca.ErrForeignTrustDomain},
		{"negative TTL", c.CA, ca.JWTSVIDParams{SPIFFEID: workloadID, Audience: []string{"db"}, TTL: -1}, ca.ErrInvalidParams},
		{"no key", ca.New(ca.Config{TrustDomain: td}), ca.JWTSVIDParams{SPIFFEID: workloadID, Audience: []string{"db"}}, ca.ErrNoJWTKey},
		{"key expired", func() *ca.CA {
			x := ca.New(ca.Config{TrustDomain: td})
			x.SetJWTKey(&ca.JWTKey{ID: "old", Signer: catest.NewKey(t), NotAfter: time.Now().Add(-time.Minute)})
			return x
		}(), ca.JWTSVIDParams{SPIFFEID: workloadID, Audience: []string{"db"}}, ca.ErrAuthorityExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.ca.SignJWTSVID(ctx, tt.p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
