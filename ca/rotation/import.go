package rotation

import (
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/signet-mesh/signet/ca/bundle"
)

// Import names the files of an existing CA certificate and key to use
// instead of a root signet creates.
type Import struct {
	// CertFile holds the CA certificate (PEM). Certificates after the
	// first are taken as the start of its chain.
	CertFile string
	// ChainFile holds the certificates above CertFile (PEM), nearest
	// first, up to and including the organisation's root(s), which become
	// the bundle's trust anchors. Only for ImportIntermediate.
	ChainFile string
	// KeyFile holds the certificate's private key (PEM, PKCS #1, #8 or
	// SEC 1). It is re-encrypted into signet's key store on import.
	KeyFile string
	// KeyPassphrase decrypts KeyFile; nil when it is not encrypted.
	KeyPassphrase []byte
}

// readImport reads a configured import's files. Its key is always given
// (a configured import never comes from a CSR).
func readImport(imp *Import) (*parsedImport, error) {
	certs, err := pemutil.ReadCertificateBundle(imp.CertFile)
	if err != nil {
		return nil, wrapErr("%w: reading %s: %v", ErrInvalidImport, imp.CertFile, err)
	}
	cert, chain := certs[0], certs[1:]
	if imp.ChainFile != "" {
		more, err := pemutil.ReadCertificateBundle(imp.ChainFile)
		if err != nil {
			return nil, wrapErr("%w: reading %s: %v", ErrInvalidImport, imp.ChainFile, err)
		}
		chain = append(chain, more...)
	}
	data, err := os.ReadFile(imp.KeyFile)
	if err != nil {
		return nil, wrapErr("%w: reading key: %v", ErrInvalidImport, err)
	}
	// Never prompt: the CA runs unattended.
	opts := []pemutil.Options{pemutil.WithPasswordPrompt("", func(string) ([]byte, error) {
		return nil, errors.New("key is encrypted and no passphrase was given")
	})}
	if len(imp.KeyPassphrase) > 0 {
		opts = append(opts, pemutil.WithPassword(imp.KeyPassphrase))
	}
	k, err := pemutil.ParseKey(data, opts...)
	if err != nil {
		return nil, wrapErr("%w: %s: %v", ErrInvalidImport, imp.KeyFile, err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, wrapErr("%w: %s holds a %T, not a private key", ErrInvalidImport, imp.KeyFile, k)
	}
	return &parsedImport{cert: cert, chain: chain, key: key}, nil
}

// checkImport accepts a CA certificate that can sign certificates, is
// valid now, matches key, and is either self-signed (selfSigned) or
// verifies through chain up to a self-signed anchor in chain.
func checkImport(cert *x509.Certificate, chain []*x509.Certificate, key crypto.Signer, selfSigned bool, now time.Time) error {
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("not a CA certificate with keyCertSign")
	}
	if cert.MaxPathLenZero && cert.MaxPathLen == 0 {
		// signet puts its intermediates under it.
		return errors.New("path length constraint 0 leaves no room for signet's intermediates")
	}
	if now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
		return errors.New("not valid now")
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return errors.New("private key does not match the certificate")
	}
	if selfSigned {
		if !bundle.IsSelfSigned(cert) {
			return errors.New("not self-signed (import a CA under your own root as an intermediate)")
		}
		if len(chain) > 0 {
			return errors.New("a root has no chain")
		}
		return nil
	}
	if bundle.IsSelfSigned(cert) {
		return errors.New("self-signed (import it as a root)")
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range chain {
		if bundle.IsSelfSigned(c) {
			roots.AddCert(c)
		} else {
			inters.AddCert(c)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inters,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return errors.New("does not chain to a root in the chain file: " + err.Error())
	}
	return nil
}
