package rotation

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

// pendingCSRsKey is the store meta key holding the keys of CSRs made by
// PrepareRoot with CSROnly that await their signed certificate: a JSON
// object from key ID to pendingCSR.
const pendingCSRsKey = "pending_root_csrs"

// pendingCSR is a key made for a CSR, awaiting its certificate.
type pendingCSR struct {
	KeyRef    string    `json:"key_ref"`
	KeyType   string    `json:"key_type"`
	CreatedAt time.Time `json:"created_at"`
}

// parsedImport is a certificate to import with its chain and, when given,
// its key.
type parsedImport struct {
	cert  *x509.Certificate
	chain []*x509.Certificate
	key   crypto.Signer // nil: the key of a CSR
	csrID string
}

func parseImportPEM(p PrepareParams) (*parsedImport, error) {
	certs, err := pemutil.ParseCertificateBundle(p.CertPEM)
	if err != nil {
		return nil, wrapErr("%w: certificate: %v", ErrInvalidImport, err)
	}
	imp := &parsedImport{cert: certs[0], chain: certs[1:], csrID: p.CSRKeyID}
	if len(p.ChainPEM) > 0 {
		more, err := pemutil.ParseCertificateBundle(p.ChainPEM)
		if err != nil {
			return nil, wrapErr("%w: chain: %v", ErrInvalidImport, err)
		}
		imp.chain = append(imp.chain, more...)
	}
	if len(p.KeyPEM) > 0 {
		if p.CSRKeyID != "" {
			return nil, refuse(ErrRefused, "give either the key or the CSR key ID, not both")
		}
		// Never prompt: the CA runs unattended.
		k, err := pemutil.ParseKey(p.KeyPEM, pemutil.WithPasswordPrompt("", func(string) ([]byte, error) {
			return nil, errors.New("the key is encrypted: decrypt it for the import (it is re-encrypted in signet's key store)")
		}))
		if err != nil {
			return nil, wrapErr("%w: key: %v", ErrInvalidImport, err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, wrapErr("%w: key is a %T, not a private key", ErrInvalidImport, k)
		}
		imp.key = signer
	}
	return imp, nil
}

// findCSRKey returns the pending CSR key that imp was issued for: the one
// imp names, or the one whose public key is the certificate's.
func (m *Manager) findCSRKey(ctx context.Context, pending map[string]pendingCSR, imp *parsedImport) (string, crypto.Signer, error) {
	ids := make([]string, 0, len(pending))
	for id := range pending {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if imp.csrID != "" {
		if _, ok := pending[imp.csrID]; !ok {
			return "", nil, refuse(ErrRefused, "no CSR is waiting under key ID %q (waiting: %s)", imp.csrID, listOrNone(ids))
		}
		ids = []string{imp.csrID}
	}
	for _, id := range ids {
		s, err := m.cfg.Keys.Load(ctx, pending[id].KeyRef)
		if err != nil {
			return "", nil, wrapErr("loading key of CSR %s: %w", id, err)
		}
		if publicKeysEqual(s.Public(), imp.cert.PublicKey) {
			return id, s, nil
		}
	}
	if imp.csrID != "" {
		return "", nil, wrapErr("%w: the certificate is not for the key of CSR %s", ErrInvalidImport, imp.csrID)
	}
	return "", nil, refuse(ErrRefused, "no key was given (--key) and the certificate matches no waiting CSR (waiting: %s)", listOrNone(ids))
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}

func listOrNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// prepareCSR creates a key and a CSR for a CA certificate under the
// organisation's PKI, and remembers the key until the certificate is
// imported. The key is made and the CSR signed before the transaction,
// which only adds the key to the waiting ones (other entries are kept as
// the transaction finds them) with its audit record.
func (m *Manager) prepareCSR(ctx context.Context, p PrepareParams) (*PrepareResult, error) {
	id := newID()
	signer, ref, err := m.cfg.Keys.Create(ctx, keyName(store.KindRoot, id), m.cfg.KeyType)
	if err != nil {
		return nil, wrapErr("making CSR: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{"SPIFFE"}, CommonName: "signet CA " + m.cfg.TrustDomain.Name()},
		URIs:    []*url.URL{m.cfg.TrustDomain.ID().URL()},
	}, signer)
	if err != nil {
		m.discard(ctx, &work{keys: []preparedKey{{ref: ref, created: true}}})
		return nil, wrapErr("creating CSR: %w", err)
	}
	now := m.clock.Now()
	fnFailed := false
	err = m.cfg.Store.Update(ctx, func(tx store.Tx) error {
		fnFailed = true
		pending, err := readPendingCSRs(tx)
		if err != nil {
			return err
		}
		pending[id] = pendingCSR{KeyRef: ref, KeyType: string(m.cfg.KeyType), CreatedAt: now}
		if _, err := audit.Append(tx, audit.Record{Type: audit.TypeAuthorityPrepared, Outcome: audit.OutcomeSuccess, Actor: p.Actor,
			Details: map[string]string{audit.DetailKeyID: id, audit.DetailMethod: "PrepareRoot (CSR for an upstream CA)"}}, now); err != nil {
			return err
		}
		if err := writePendingCSRs(tx, pending); err != nil {
			return err
		}
		fnFailed = false
		return nil
	})
	if err != nil {
		if fnFailed {
			m.discard(ctx, &work{keys: []preparedKey{{ref: ref, created: true}}})
		}
		return nil, wrapErr("making CSR: %w", err)
	}
	m.log.Info("root CSR created", logCSRKeyID, id, logActor, p.Actor)
	return &PrepareResult{CSRPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), CSRKeyID: id}, nil
}

func readPendingCSRs(tx store.Tx) (map[string]pendingCSR, error) {
	v, err := tx.GetMeta(pendingCSRsKey)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return decodePendingCSRs(v)
}

// decodePendingCSRs decodes the stored CSR keys; nil or empty is none.
func decodePendingCSRs(v []byte) (map[string]pendingCSR, error) {
	out := map[string]pendingCSR{}
	if len(v) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, wrapErr("%s: %w", pendingCSRsKey, err)
	}
	return out, nil
}

func writePendingCSRs(tx store.Tx, pending map[string]pendingCSR) error {
	v, err := json.Marshal(pending)
	if err != nil {
		return err
	}
	return tx.PutMeta(pendingCSRsKey, v)
}
