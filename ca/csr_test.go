package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/signet-mesh/signet/ca"
)

type csrCase struct {
	name    string
	der     []byte
	wantErr string // substring; "" for success
}

// csrCases builds the ParseCSR table once: RSA key generation is slow, and
// FuzzParseCSR seeds from the same inputs.
var csrCases = sync.OnceValues(func() ([]csrCase, error) {
	mk := func(key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
		if tmpl == nil {
			tmpl = &x509.CertificateRequest{}
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			panic(err)
		}
		return der
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		return nil, err
	}

	valid := mk(p256, nil)
	badSig := append([]byte(nil), valid...)
	badSig[len(badSig)-1] ^= 0xff
	// A CSR the size limit stops: many SANs the CA would ignore anyway.
	var names []string
	for i := range 400 {
		names = append(names, strings.Repeat("a", 20)+string(rune('a'+i%26))+".example.org")
	}
	big := mk(p256, &x509.CertificateRequest{DNSNames: names})

	return []csrCase{
		{"valid P-256", valid, ""},
		{"valid P-384", mk(p384, nil), ""},
		{"valid RSA-2048", mk(rsa2048, nil), ""},
		{"valid Ed25519", mk(ed, nil), ""},
		{"subject and SANs are ignored, not refused", mk(p256, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "root"}, DNSNames: []string{"evil.example"}}), ""},
		{"bad signature", badSig, "signature"},
		{"too big", big, "exceeds"},
		{"garbage", []byte("not a csr"), "invalid CSR"},
		{"empty", nil, "invalid CSR"},
		{"truncated", valid[:len(valid)/2], "invalid CSR"},
		{"RSA-1024 rejected", mk(rsa1024, nil), "RSA key of 1024 bits"},
		{"P-521 rejected", mk(p521, nil), "unsupported curve"},
	}, nil
})

func TestParseCSR(t *testing.T) {
	cases, err := csrCases()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ca.ParseCSR(tt.der)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseCSR: %v", err)
				}
				if csr.PublicKey == nil {
					t.Fatal("no public key")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if !errors.Is(err, ca.ErrInvalidCSR) {
				t.Errorf("err = %v, want ErrInvalidCSR", err)
			}
		})
	}
	if len(cases[6].der) <= ca.MaxCSRBytes {
		t.Fatalf("the too-big CSR is only %d bytes", len(cases[6].der))
	}
}

func FuzzParseCSR(f *testing.F) {
	cases, err := csrCases()
	if err != nil {
		f.Fatal(err)
	}
	for _, tt := range cases {
		f.Add(tt.der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := ca.ParseCSR(der)
		if err != nil {
			if !errors.Is(err, ca.ErrInvalidCSR) {
				t.Fatalf("error %v does not wrap ErrInvalidCSR", err)
			}
			return
		}
		if len(der) > ca.MaxCSRBytes || csr.PublicKey == nil {
			t.Fatalf("accepted a CSR of %d bytes with key %T", len(der), csr.PublicKey)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature fails: %v", err)
		}
	})
}
