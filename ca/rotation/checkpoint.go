package rotation

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"

	"github.com/signet-mesh/signet/ca/store"
)

// CheckpointSigner returns the key that signs audit checkpoints, the
// active root's, and its key ID (CheckpointKeyID of the root). Roots are in
// the PEM trust bundle, so an auditor holding `signet bundle show` can
// verify an export offline.
func (m *Manager) CheckpointSigner(ctx context.Context) (crypto.Signer, string, error) {
	auths, err := m.readAuthorities(ctx)
	if err != nil {
		return nil, "", err
	}
	root := newest(auths, store.KindRoot, store.StateActive, "", "")
	if root == nil {
		return nil, "", ErrNotInitialized
	}
	cert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, "", wrapErr("root %s: %w", root.ID, err)
	}
	s, err := m.signers.get(ctx, root)
	if err != nil {
		return nil, "", err
	}
	return s, CheckpointKeyID(cert), nil
}

// CheckpointKeyID names a root's key in audit checkpoints: the hex of its
// subject key identifier.
func CheckpointKeyID(root *x509.Certificate) string { return hex.EncodeToString(root.SubjectKeyId) }
