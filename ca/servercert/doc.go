// Package servercert keeps the CA server's own TLS certificate: an
// X509-SVID for spiffe://<td>/signet/server (nodeapi.ServerID), signed by
// the CA's active intermediate, with a key that lives only in memory.
//
// Fetch the certificate per handshake; it is renewed on the way when the
// intermediate changed (a rotation) or it is past half of its life, so it
// always chains to what the CA currently signs with:
//
//	sc, err := servercert.New(servercert.Config{CA: c, DNSNames: names})
//	if err != nil { ... }
//	if _, err := sc.Certificate(); err != nil { ... } // after the CA has its authority
//	tlsConfig.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
//		return sc.Certificate()
//	}
//
// # Caveats
//
// The certificate is not recorded in the SVID index or the audit log: it
// is the server's transport identity, issued to itself, never handed out.
// If a renewal fails while the current certificate is still valid, the
// current one is served and the failure logged (at most once a minute).
package servercert
