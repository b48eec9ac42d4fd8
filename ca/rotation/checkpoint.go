package rotation

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/signet-mesh/signet/ca/audit"
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

// CheckpointKeys are the keys that may have signed the audit checkpoints
// in st: every root's, retired ones included, so old checkpoints verify.
func CheckpointKeys(ctx context.Context, st store.Store) (audit.Keys, error) {
	keys := map[string]crypto.PublicKey{}
	err := st.View(ctx, func(tx store.Tx) error {
		auths, err := tx.ListAuthorities()
		if err != nil {
			return err
		}
		for _, a := range auths {
			if a.Kind != store.KindRoot {
				continue
			}
			c, err := x509.ParseCertificate(a.CertDER)
			if err != nil {
				return fmt.Errorf("root %s: %w", a.ID, err)
			}
			keys[CheckpointKeyID(c)] = c.PublicKey
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the roots: %w", err)
	}
	return audit.KeyMap(keys), nil
}
