// Package x509chaintest builds the certificates of a CA in the middle of
// a root rotation, as signet's CA has them, for tests of chain
// verification.
package x509chaintest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// CA is a CA certificate and its key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Rotation is a CA between the activation of a new root and the
// retirement of the old: its intermediate signed by the new root and
// cross-signed by the old one (same subject, key and key identifier).
type Rotation struct {
	OldRoot, NewRoot, Other *CA // Other is a root of nobody's
	Intermediate            *CA // signed by NewRoot
	Cross                   *x509.Certificate
}

// NewRotation makes a Rotation whose CA certificates name uri (the trust
// domain's ID) as SPIFFE CA certificates do.
func NewRotation(t testing.TB, uri *url.URL) *Rotation {
	t.Helper()
	root := func(name string) *CA {
		key := NewKey(t)
		return &CA{Cert: Sign(t, caTemplate(name, uri), nil, key), Key: key}
	}
	r := &Rotation{OldRoot: root("old root"), NewRoot: root("new root"), Other: root("other root")}
	key := NewKey(t)
	r.Intermediate = &CA{Cert: Sign(t, caTemplate("intermediate", uri), r.NewRoot, key), Key: key}
	r.Cross = Sign(t, caTemplate("intermediate", uri), r.OldRoot, key)
	return r
}

// NewKey returns a new P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// Leaf returns a template for a certificate valid for the next hour,
// with a digital signature key usage, client and server extended key
// usages, and uri as its one URI SAN.
func Leaf(uri *url.URL) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{uri}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
}

// Sign signs tmpl for key's public key by parent (self-signed when parent
// is nil) and parses the result.
func Sign(t testing.TB, tmpl *x509.Certificate, parent *CA, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func caTemplate(name string, uri *url.URL) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: name}, SubjectKeyId: []byte(name),
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, URIs: []*url.URL{uri},
	}
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}
