package keys

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.step.sm/crypto/kms"
	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/uri"

	// PKCS#11 is always linked in: it is small, and without cgo it
	// compiles to a stub that reports PKCS#11 as unavailable. Cloud KMS
	// backends are heavy and live in ca/keys/allkms.
	_ "go.step.sm/crypto/kms/pkcs11"
)

// kmsManager keeps keys in a KMS or HSM through go.step.sm/crypto/kms.
// References are the key URIs or names the KMS returns.
type kmsManager struct {
	typ  apiv1.Type
	base *uri.URI
	km   apiv1.KeyManager
}

func newKMS(ctx context.Context, rawURI string) (*kmsManager, error) {
	opts := apiv1.Options{URI: rawURI}
	typ, err := opts.GetType()
	if err != nil {
		return nil, wrapErr("kms uri: %v", err)
	}
	if _, ok := apiv1.LoadKeyManagerNewFunc(typ); !ok {
		return nil, wrapErr("kms type %q is not linked into this binary (cloud KMS backends need a blank import of ca/keys/allkms)", typ)
	}
	base, err := parseURI(rawURI)
	if err != nil {
		return nil, wrapErr("kms uri: %v", err)
	}
	m := &kmsManager{typ: typ, base: base}
	if _, err := m.keyName("probe"); err != nil {
		return nil, err
	}
	km, err := kms.New(ctx, opts)
	if err != nil {
		return nil, wrapErr("opening %s: %v", typ, err)
	}
	m.km = km
	return m, nil
}

// keyName turns a signet key name into the name the KMS expects in a
// CreateKeyRequest:
//
//   - pkcs11: pkcs11:id=<8 bytes of SHA-256(name)>;object=<name> (the
//     module, token and PIN stay in KMSURI);
//   - awskms: awskms:name=<name> (a tag; AWS picks the key id);
//   - azurekms: azurekms:name=<name> (the vault comes from KMSURI's vault
//     parameter);
//   - cloudkms: <key-ring>/cryptoKeys/<name>, where key-ring is KMSURI's
//     key-ring parameter (projects/P/locations/L/keyRings/R).
func (m *kmsManager) keyName(name string) (string, error) {
	switch m.typ {
	case apiv1.PKCS11:
		id := sha256.Sum256([]byte(name))
		var enc strings.Builder
		for _, b := range id[:8] {
			fmt.Fprintf(&enc, "%%%02x", b)
		}
		return "pkcs11:id=" + enc.String() + ";object=" + url.PathEscape(name), nil
	case apiv1.AmazonKMS, apiv1.AzureKMS:
		return string(m.typ) + ":name=" + url.PathEscape(name), nil
	case apiv1.CloudKMS:
		ring := m.base.Get("key-ring")
		if ring == "" {
			return "", wrapErr("cloudkms uri needs a key-ring parameter (projects/P/locations/L/keyRings/R)")
		}
		return strings.TrimSuffix(ring, "/") + "/cryptoKeys/" + name, nil
	default:
		return "", wrapErr("creating keys in kms type %q is not supported", m.typ)
	}
}

func (m *kmsManager) Create(_ context.Context, name string, kt KeyType) (crypto.Signer, string, error) {
	p, ok := keyTypes[kt.orDefault()]
	if !ok {
		return nil, "", fmt.Errorf("%w %q", ErrUnknownKeyType, kt)
	}
	if err := checkName(name); err != nil {
		return nil, "", err
	}
	keyName, err := m.keyName(name)
	if err != nil {
		return nil, "", err
	}
	resp, err := m.km.CreateKey(&apiv1.CreateKeyRequest{Name: keyName, SignatureAlgorithm: p.alg, Bits: p.bits})
	if err != nil {
		if errors.Is(err, apiv1.AlreadyExistsError{}) {
			return nil, "", fmt.Errorf("%w: %s", ErrKeyExists, keyName)
		}
		return nil, "", wrapErr("creating key %s: %v", keyName, err)
	}
	ref := resp.CreateSignerRequest.SigningKey
	if ref == "" {
		ref = resp.Name
	}
	signer, err := m.km.CreateSigner(&resp.CreateSignerRequest)
	if err != nil {
		return nil, "", wrapErr("opening new key %s: %v", ref, err)
	}
	return signer, ref, nil
}

func (m *kmsManager) Load(_ context.Context, ref string) (crypto.Signer, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: empty reference", ErrInvalidName)
	}
	signer, err := m.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: ref})
	if err != nil {
		if errors.Is(err, apiv1.NotFoundError{}) {
			return nil, fmt.Errorf("%w: %s", ErrKeyNotFound, ref)
		}
		return nil, wrapErr("loading key %s: %v", ref, err)
	}
	return signer, nil
}

// Delete removes a key from the KMS: through go.step.sm/crypto's
// KeyDeleter where the backend has it, or PKCS#11's own DeleteKey.
func (m *kmsManager) Delete(_ context.Context, ref string) error {
	if ref == "" {
		return fmt.Errorf("%w: empty reference", ErrInvalidName)
	}
	var err error
	switch km := m.km.(type) {
	case apiv1.KeyDeleter:
		err = km.DeleteKey(&apiv1.DeleteKeyRequest{Name: ref})
	case interface{ DeleteKey(uri string) error }: // PKCS#11
		err = km.DeleteKey(ref)
	default:
		return fmt.Errorf("%w (%s): %s is left in place", ErrDeleteUnsupported, m.typ, ref)
	}
	if errors.Is(err, apiv1.NotFoundError{}) {
		return fmt.Errorf("%w: %s", ErrKeyNotFound, ref)
	}
	if err != nil {
		return wrapErr("deleting key %s: %v", ref, err)
	}
	return nil
}

func (m *kmsManager) Import(context.Context, string, crypto.Signer) (string, error) {
	return "", fmt.Errorf("%w (%s)", ErrImportUnsupported, m.typ)
}

func (m *kmsManager) Close() error {
	if err := m.km.Close(); err != nil {
		return wrapErr("closing %s: %v", m.typ, err)
	}
	return nil
}

// parseURI parses a KMS URI; it exists so tests can build a kmsManager
// without opening the KMS.
func parseURI(raw string) (*uri.URI, error) { return uri.Parse(raw) }
