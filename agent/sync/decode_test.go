package sync

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// newRoot returns a self-signed CA certificate's DER and a PKIX public key.
func newRoot(t *testing.T, serial int64) (der, pub []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	if der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key); err != nil {
		t.Fatal(err)
	}
	if pub, err = x509.MarshalPKIXPublicKey(key.Public()); err != nil {
		t.Fatal(err)
	}
	return der, pub
}

// TestDecoderReuses: a root or JWT key the previous bundle message held
// is not parsed again (the same value comes back), one it did not hold is
// parsed, and what a message no longer holds is forgotten.
func TestDecoderReuses(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	s := New(Config{TrustDomain: td})
	rootA, keyA := newRoot(t, 1)
	rootB, keyB := newRoot(t, 2)
	msg := func(roots [][]byte, keys ...[]byte) *nodev1.Bundle {
		b := &nodev1.Bundle{X509Authorities: roots}
		for i, k := range keys {
			b.JwtAuthorities = append(b.JwtAuthorities, &nodev1.JWTKey{KeyId: string(rune('a' + i)), PublicKey: k})
		}
		return b
	}
	decode := func(b *nodev1.Bundle) []*x509.Certificate {
		t.Helper()
		s.own.begin()
		xb, err := s.own.x509Bundle(td, b)
		if err != nil {
			t.Fatal(err)
		}
		jb := s.jwtBundle(&s.own, td, b, false)
		s.own.done()
		if got, want := len(jb.JWTAuthorities()), len(b.GetJwtAuthorities()); got != want {
			t.Fatalf("%d JWT authorities decoded, want %d", got, want)
		}
		return xb.X509Authorities()
	}

	first := decode(msg([][]byte{rootA}, keyA))
	second := decode(msg([][]byte{rootA, rootB}, keyA, keyB))
	if len(second) != 2 || second[0] != first[0] {
		t.Fatalf("the root of the previous message was parsed again (or lost): %v then %v", first, second)
	}
	if !second[1].Equal(mustParse(t, rootB)) {
		t.Fatal("the new root decoded to another certificate")
	}
	third := decode(msg([][]byte{rootB}, keyB))
	if third[0] != second[1] {
		t.Fatal("the root kept from the previous message was parsed again")
	}
	if _, held := s.own.last[string(rootA)]; held || len(s.own.last) != 2 {
		t.Errorf("decoder holds %d decodings (root A held: %v), want the 2 of the last message", len(s.own.last), held)
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDecoderRefuses: a bundle without roots, or with a root that does not
// parse, is an error; a JWT key that does not parse is skipped.
func TestDecoderRefuses(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	s := New(Config{TrustDomain: td})
	root, key := newRoot(t, 1)
	for _, tc := range []struct {
		name    string
		bundle  *nodev1.Bundle
		wantErr string
		jwtKeys int
	}{
		{name: "no roots", bundle: &nodev1.Bundle{}, wantErr: "no roots"},
		{name: "bad root", bundle: &nodev1.Bundle{X509Authorities: [][]byte{root, []byte("junk")}}, wantErr: "parsing bundle root"},
		{name: "bad JWT key skipped", bundle: &nodev1.Bundle{X509Authorities: [][]byte{root}, JwtAuthorities: []*nodev1.JWTKey{
			{KeyId: "bad", PublicKey: []byte("junk")}, {KeyId: "good", PublicKey: key}}}, jwtKeys: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.own.begin()
			_, err := s.own.x509Bundle(td, tc.bundle)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(s.jwtBundle(&s.own, td, tc.bundle, false).JWTAuthorities()); got != tc.jwtKeys {
				t.Errorf("%d JWT authorities, want %d", got, tc.jwtKeys)
			}
			s.own.done()
		})
	}
}
