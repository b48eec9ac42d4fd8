package keyder

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
)

// testKeys are keys of every kind the encoders take: P-256 (their own
// encoding, many keys, so scalars and coordinates with leading zero bytes
// come up) and the kinds they hand to crypto/x509.
func testKeys(t *testing.T) []crypto.Signer {
	t.Helper()
	var keys []crypto.Signer
	for range 300 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return append(keys, p384, ed, rsaKey)
}

func TestEncodingsMatchCryptoX509(t *testing.T) {
	for _, k := range testKeys(t) {
		want, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		got, err := MarshalPKIXPublicKey(k.Public())
		if err != nil {
			t.Fatalf("MarshalPKIXPublicKey(%T): %v", k, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("MarshalPKIXPublicKey(%T) = %x, crypto/x509 writes %x", k, got, want)
		}

		var spki struct {
			Algorithm        pkix.AlgorithmIdentifier
			SubjectPublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(want, &spki); err != nil {
			t.Fatal(err)
		}
		bits, err := PublicKeyBits(k.Public())
		if err != nil {
			t.Fatalf("PublicKeyBits(%T): %v", k, err)
		}
		if !bytes.Equal(bits, spki.SubjectPublicKey.Bytes) {
			t.Fatalf("PublicKeyBits(%T) = %x, want the SPKI's %x", k, bits, spki.SubjectPublicKey.Bytes)
		}

		want, err = x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		got, err = MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatalf("MarshalPKCS8PrivateKey(%T): %v", k, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("MarshalPKCS8PrivateKey(%T) = %x, crypto/x509 writes %x", k, got, want)
		}
		back, err := x509.ParsePKCS8PrivateKey(got)
		if err != nil {
			t.Fatalf("ParsePKCS8PrivateKey: %v", err)
		}
		if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(back.(crypto.Signer).Public()) {
			t.Fatalf("PKCS #8 of a %T decodes to another key", k)
		}
	}
}

func TestBadKeysAreRefused(t *testing.T) {
	// A point off the curve must not be encoded as if it were a key.
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bad := k.PublicKey
	bad.Y = new(big.Int).Add(bad.Y, big.NewInt(1))
	if _, err := MarshalPKIXPublicKey(&bad); err == nil {
		t.Error("MarshalPKIXPublicKey encoded a point off the curve")
	}
	if _, err := PublicKeyBits(&bad); err == nil {
		t.Error("PublicKeyBits encoded a point off the curve")
	}
	if _, err := MarshalPKIXPublicKey("not a key"); err == nil {
		t.Error("MarshalPKIXPublicKey encoded a string")
	}
	if _, err := MarshalPKCS8PrivateKey(struct{}{}); err == nil {
		t.Error("MarshalPKCS8PrivateKey encoded a struct")
	}
}
