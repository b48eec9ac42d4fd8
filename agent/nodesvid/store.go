package nodesvid

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.step.sm/crypto/pemutil"

	"github.com/signet-mesh/signet/internal/fileutil"
	"github.com/signet-mesh/signet/internal/keyder"
	"github.com/signet-mesh/signet/internal/keypass"
)

// Files under the agent's data dir.
const (
	// NodeSVIDFile holds the node SVID's encrypted key and its chain in
	// one file, so one atomic write replaces both together.
	NodeSVIDFile = "node-svid.pem"
	// BundleFile holds the last trust bundle the CA sent: after a root
	// rotation it, not the bootstrap --trust-bundle, authenticates the CA.
	BundleFile = "bundle.pem"
	// JoinTokenHashFile holds the SHA-256 (hex) of the join token the
	// stored node SVID came from: a configured token with another hash is
	// a new token, and the agent attests with it. The token itself, a
	// single-use secret, is never stored.
	JoinTokenHashFile = "join-token.sha256"
	// RejectedSVIDFile is where the node SVID goes once the CA refused it
	// for good (evicted, superseded, unknown): no restart uses it again,
	// and an operator can still look at it.
	RejectedSVIDFile = "node-svid.rejected.pem"
)

// saveNodeSVID writes the node SVID and its key (encrypted with pass, at
// iterations rounds of PBKDF2) atomically, mode 0600. The key is encrypted as the CA's keys are
// (keypass.EncryptPKCS8), not through pemutil.Serialize, whose switch
// over every key type and format (OpenSSH, ML-DSA, prompts) would link
// about 80 KB the agent never runs into every agent binary (issue 19).
func saveNodeSVID(dir string, pass []byte, iterations int, svid *x509svid.SVID) error {
	der, err := keyder.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return fmt.Errorf("encoding node key: %w", err)
	}
	block, err := keypass.EncryptPKCS8(der, pass, iterations)
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
	return fileutil.WriteAtomic(filepath.Join(dir, NodeSVIDFile), buf.Bytes(), 0o600)
}

// loadNodeSVID reads what saveNodeSVID wrote. It returns an error wrapping
// os.ErrNotExist when there is no stored identity.
func loadNodeSVID(dir string, pass []byte) (*x509svid.SVID, error) {
	return parseNodeSVID(filepath.Join(dir, NodeSVIDFile), pass)
}

// parseNodeSVID reads a node SVID file.
func parseNodeSVID(path string, pass []byte) (*x509svid.SVID, error) {
	data, err := os.ReadFile(path)
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
			// A wrong passphrase usually fails the CBC padding check;
			// the rare time it passes, the bytes do not parse.
			k, err := x509.ParsePKCS8PrivateKey(der)
			if err != nil {
				return nil, fmt.Errorf("decrypting node key (wrong passphrase?): %w", err)
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

// saveBundle writes the trust bundle's roots (public) atomically.
func saveBundle(dir string, roots []*x509.Certificate) error {
	var buf bytes.Buffer
	for _, c := range roots {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			return err
		}
	}
	return fileutil.WriteAtomic(filepath.Join(dir, BundleFile), buf.Bytes(), 0o644)
}

// tokenHash is what JoinTokenHashFile holds for token.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// saveTokenHash records that the stored node SVID came from token.
func saveTokenHash(dir, token string) error {
	return fileutil.WriteAtomic(filepath.Join(dir, JoinTokenHashFile), []byte(tokenHash(token)+"\n"), 0o600)
}

// tokenOrigin compares token with the one the stored node SVID came from.
// It reports known false when no hash was recorded (an identity stored by
// an agent before it recorded them).
func tokenOrigin(dir, token string) (same, known bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, JoinTokenHashFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	want := strings.TrimSpace(string(data))
	return subtle.ConstantTimeCompare([]byte(want), []byte(tokenHash(token))) == 1, true, nil
}

// setAside moves the stored node SVID to RejectedSVIDFile, and forgets the
// token it came from, so that no later start uses either.
func setAside(dir string) error {
	if err := os.Rename(filepath.Join(dir, NodeSVIDFile), filepath.Join(dir, RejectedSVIDFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(filepath.Join(dir, JoinTokenHashFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Make the move survive a crash, as fileutil.WriteAtomic does.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
