// Package ca signs SPIFFE credentials: X509-SVIDs that follow the SPIFFE
// X509-SVID standard, and JWT-SVIDs.
//
// A CA holds no keys of its own and does no I/O. ca/rotation gives it the
// intermediate that signs X509-SVIDs and the JWT key, and swaps them when
// they rotate; signing calls running at that moment are not disturbed.
//
//	c := ca.New(ca.Config{TrustDomain: td})
//	c.SetX509Authority(&ca.X509Authority{ID: id, Certificate: inter, Signer: key, Roots: roots})
//
//	csr, err := ca.ParseCSR(der) // size, key type and signature checked
//	if err != nil { ... }
//	svid, err := c.SignX509SVID(ctx, ca.X509SVIDParams{
//		SPIFFEID:  spiffeid.RequireFromString("spiffe://example.org/web"),
//		PublicKey: csr.PublicKey,
//		TTL:       time.Hour,
//	})
//	// svid.Chain: leaf, intermediate, upstream (no root)
//
//	token, exp, err := c.SignJWTSVID(ctx, ca.JWTSVIDParams{SPIFFEID: id, Audience: []string{"db"}})
//
// Each X509-SVID is checked before it is returned: its chain verifies
// against the authority's roots, it carries exactly the requested SPIFFE
// ID, CA:false, the right key usages and the requested key, and it does
// not outlive its issuer. A failure there means a misconfigured authority
// and yields ErrCheckFailed rather than a certificate peers would reject.
//
// NewRootTemplate, NewIntermediateTemplate and CreateCertificate build the
// CA certificates themselves; ca/rotation and ca/catest use them.
package ca
