package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TestSlimLeaf: the slim leaf the agent keeps for a workload SVID serves
// what the agent reads from it: the same DER, SPIFFE ID, validity, serial
// and DNS names, its key, and a signature that still checks against the
// intermediate.
func TestSlimLeaf(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: now, NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org"}}}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://example.org/web")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x5eed), NotBefore: now, NotAfter: now.Add(time.Hour), DNSNames: []string{"web.example.org"},
		URIs: []*url.URL{id.URL()}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	full, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	slim := slimLeaf(full, key)
	if err := slim.CheckSignatureFrom(ca); err != nil {
		t.Errorf("the slim leaf's signature does not check against its CA: %v", err)
	}
	got, err := x509svid.IDFromCert(slim)
	if err != nil || got != id {
		t.Errorf("IDFromCert(slim) = %v, %v; want %v", got, err, id)
	}
	type view struct {
		Raw               []byte
		Serial            string
		NotBefore         time.Time
		NotAfter          time.Time
		DNSNames          []string
		KeyUsage          x509.KeyUsage
		ExtKeyUsage       []x509.ExtKeyUsage
		PublicKeyMatches  bool
		AuthorityKeyMatch bool
	}
	viewOf := func(c *x509.Certificate) view {
		return view{c.Raw, c.SerialNumber.String(), c.NotBefore, c.NotAfter, c.DNSNames, c.KeyUsage, c.ExtKeyUsage,
			key.PublicKey.Equal(c.PublicKey), string(c.AuthorityKeyId) == string(ca.SubjectKeyId)}
	}
	if diff := cmp.Diff(viewOf(full), viewOf(slim)); diff != "" {
		t.Errorf("slim leaf (-full +slim):\n%s", diff)
	}
}
