package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca"
)

func ExampleCA_SignX509SVID() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	now := time.Now()

	// A root and an intermediate; ca/rotation does this for real.
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl, _ := ca.NewRootTemplate(td, rootKey.Public(), now, 24*time.Hour)
	root, _ := ca.CreateCertificate(tmpl, tmpl, rootKey.Public(), rootKey)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl, _ = ca.NewIntermediateTemplate(td, interKey.Public(), now, time.Hour, root)
	inter, _ := ca.CreateCertificate(tmpl, root, interKey.Public(), rootKey)

	c := ca.New(ca.Config{TrustDomain: td})
	c.SetX509Authority(&ca.X509Authority{ID: "i1", Certificate: inter, Signer: interKey, Roots: []*x509.Certificate{root}})

	// The workload's CSR, as an agent sends it.
	workloadKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, workloadKey)

	csr, err := ca.ParseCSR(der)
	if err != nil {
		fmt.Println(err)
		return
	}
	svid, err := c.SignX509SVID(context.Background(), ca.X509SVIDParams{
		SPIFFEID:  spiffeid.RequireFromPath(td, "/web"),
		PublicKey: csr.PublicKey,
		TTL:       10 * time.Minute,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(svid.Chain[0].URIs[0], len(svid.Chain), svid.AuthorityID)
	// Output: spiffe://example.org/web 2 i1
}
