package agent

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.step.sm/crypto/pemutil"

	"github.com/signet-mesh/signet/internal/fileutil"
)

// Files under the agent's data dir.
const (
	// nodeSVIDFile holds the node SVID's encrypted key and its chain in
	// one file, so one atomic write replaces both together.
	nodeSVIDFile = "node-svid.pem"
	// bundleFile holds the last trust bundle the CA sent: after a root
	// rotation it, not the bootstrap --trust-bundle, authenticates the CA.
	bundleFile = "bundle.pem"
)

// saveNodeSVID writes the node SVID and its key (encrypted with pass)
// atomically, mode 0600.
func saveNodeSVID(dir string, pass []byte, svid *x509svid.SVID) error {
	block, err := pemutil.Serialize(svid.PrivateKey, pemutil.WithPassword(pass), pemutil.WithPKCS8(true))
	if err != nil {
		return fmt.Errorf("encrypting node key: %w", err)
	}
	var buf bytes.Buffer
	if err := pem.Encode(&buf, block); err != nil {
		return err
	}
	for _, c := range svid.Certificates {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			return err
		}
	}
	return fileutil.WriteAtomic(filepath.Join(dir, nodeSVIDFile), buf.Bytes(), 0o600)
}

// loadNodeSVID reads what saveNodeSVID wrote. It returns an error wrapping
// os.ErrNotExist when there is no stored identity.
func loadNodeSVID(dir string, pass []byte) (*x509svid.SVID, error) {
	data, err := os.ReadFile(filepath.Join(dir, nodeSVIDFile))
	if err != nil {
		return nil, err
	}
	var (
		key   crypto.Signer
		certs []*x509.Certificate
	)
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "ENCRYPTED PRIVATE KEY":
			der, err := pemutil.DecryptPKCS8PrivateKey(b.Bytes, pass)
			if err != nil {
				return nil, fmt.Errorf("decrypting node key (wrong passphrase?): %w", err)
			}
			k, err := x509.ParsePKCS8PrivateKey(der)
			if err != nil {
				return nil, fmt.Errorf("parsing node key: %w", err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("node key of type %T cannot sign", k)
			}
			key = s
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing node certificate: %w", err)
			}
			certs = append(certs, c)
		}
	}
	if key == nil || len(certs) == 0 {
		return nil, errors.New("stored node SVID is incomplete")
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return nil, fmt.Errorf("stored node certificate: %w", err)
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}, nil
}

func saveBundle(dir string, roots []*x509.Certificate) error {
	var buf bytes.Buffer
	for _, c := range roots {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return fileutil.WriteAtomic(filepath.Join(dir, bundleFile), buf.Bytes(), 0o644)
}

// LoadBundleFile reads PEM certificates (the --trust-bundle file).
func LoadBundleFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := pemutil.ParseCertificateBundle(data)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return certs, nil
}
