package client

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
)

// TestNewCSR: the CSR of every key type parses, its signature verifies,
// it carries the key, and for the fast path (P-256) its signed part is
// byte for byte what x509.CreateCertificateRequest makes.
func TestNewCSR(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     crypto.Signer
		wantAlg x509.SignatureAlgorithm
	}{
		{name: "p256", key: p256, wantAlg: x509.ECDSAWithSHA256},
		{name: "p384", key: p384, wantAlg: x509.ECDSAWithSHA384},
		{name: "ed25519", key: ed, wantAlg: x509.PureEd25519},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := newCSR(tt.key)
			if err != nil {
				t.Fatalf("newCSR: %v", err)
			}
			got, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatalf("ParseCertificateRequest: %v", err)
			}
			if err := got.CheckSignature(); err != nil {
				t.Errorf("CheckSignature: %v", err)
			}
			if got.SignatureAlgorithm != tt.wantAlg {
				t.Errorf("signature algorithm %v, want %v", got.SignatureAlgorithm, tt.wantAlg)
			}
			if pub, ok := got.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(tt.key.Public()) {
				t.Errorf("CSR carries another public key")
			}
			std, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			want, err := x509.ParseCertificateRequest(std)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.RawTBSCertificateRequest, want.RawTBSCertificateRequest) {
				t.Errorf("signed part differs from x509.CreateCertificateRequest's:\ngot  %x\nwant %x", got.RawTBSCertificateRequest, want.RawTBSCertificateRequest)
			}
		})
	}
}

// TestNewCSRIsDER: the P-256 requests, built by hand, are DER that
// encoding/asn1 writes back byte for byte, whatever the lengths of the
// signature's integers (70 to 72 bytes in all, and now and then shorter).
func TestNewCSRIsDER(t *testing.T) {
	for range 500 {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := newCSR(key)
		if err != nil {
			t.Fatalf("newCSR: %v", err)
		}
		var csr struct {
			Info      asn1.RawValue
			Algorithm pkix.AlgorithmIdentifier
			Signature asn1.BitString
		}
		rest, err := asn1.Unmarshal(der, &csr)
		if err != nil || len(rest) != 0 {
			t.Fatalf("CSR %x: %v, %d bytes left over", der, err, len(rest))
		}
		again, err := asn1.Marshal(csr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(der, again) {
			t.Fatalf("CSR is not DER:\ngot  %x\nDER  %x", der, again)
		}
		parsed, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := parsed.CheckSignature(); err != nil {
			t.Fatalf("CheckSignature: %v", err)
		}
	}
}

// A tampered CSR does not verify: the signature covers the signed part.
func TestNewCSRSignatureCovers(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := newCSR(key)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	csr.PublicKey = &other.PublicKey
	if err := csr.CheckSignature(); err == nil {
		t.Error("signature verifies under another key")
	}
}

func BenchmarkNewCSR(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := newCSR(key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("x509", func(b *testing.B) {
		for b.Loop() {
			if _, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestMakeCSRsFillsIn: a request that carries a CSR (sent before, and
// refused unseen) is sent with it; one without gets a new CSR for its
// key, filled into the caller's request for a later retry.
func TestMakeCSRsFillsIn(t *testing.T) {
	var reqs []MintRequest
	for _, id := range []string{"given", "new"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, MintRequest{EntryID: id, Key: key})
	}
	reqs[0].CSR = []byte("the CSR sent before")
	b := makeCSRs(reqs)
	if b.err != nil {
		t.Fatal(b.err)
	}
	if got := string(b.params[0].GetCsr()); got != "the CSR sent before" {
		t.Errorf("request with a CSR sent %q, want its own", got)
	}
	if !bytes.Equal(b.params[1].GetCsr(), reqs[1].CSR) || reqs[1].CSR == nil {
		t.Fatalf("new CSR not filled into the request: sent %d bytes, request holds %d", len(b.params[1].GetCsr()), len(reqs[1].CSR))
	}
	csr, err := x509.ParseCertificateRequest(reqs[1].CSR)
	if err != nil {
		t.Fatal(err)
	}
	if !csr.PublicKey.(*ecdsa.PublicKey).Equal(reqs[1].Key.Public()) {
		t.Error("the new CSR is not for the request's key")
	}
}
