package keys

import (
	"context"
	"crypto"
	"fmt"
	"strings"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/kms/apiv1"
)

// KeyType names the algorithm and size of a CA key.
type KeyType string

const (
	// KeyTypeECP256 is ECDSA on P-256, the default: small, fast, and
	// accepted by every TLS stack and SPIFFE library.
	KeyTypeECP256 KeyType = "EC-P256"
	// KeyTypeECP384 is ECDSA on P-384.
	KeyTypeECP384 KeyType = "EC-P384"
	// KeyTypeRSA3072 is RSA with a 3072-bit modulus.
	KeyTypeRSA3072 KeyType = "RSA-3072"
	// KeyTypeRSA4096 is RSA with a 4096-bit modulus.
	KeyTypeRSA4096 KeyType = "RSA-4096"

	// DefaultKeyType is used when a KeyType is empty.
	DefaultKeyType = KeyTypeECP256
)

// keyTypes maps each KeyType to the parameters go.step.sm/crypto takes.
var keyTypes = map[KeyType]struct {
	kty, crv string
	bits     int
	alg      apiv1.SignatureAlgorithm
}{
	KeyTypeECP256:  {"EC", "P-256", 0, apiv1.ECDSAWithSHA256},
	KeyTypeECP384:  {"EC", "P-384", 0, apiv1.ECDSAWithSHA384},
	KeyTypeRSA3072: {"RSA", "", 3072, apiv1.SHA256WithRSA},
	KeyTypeRSA4096: {"RSA", "", 4096, apiv1.SHA256WithRSA},
}

// ParseKeyType parses a key type name, case-insensitively. The empty string
// is DefaultKeyType, so an unset config key means the default.
func ParseKeyType(s string) (KeyType, error) {
	if s == "" {
		return DefaultKeyType, nil
	}
	for kt := range keyTypes {
		if strings.EqualFold(s, string(kt)) {
			return kt, nil
		}
	}
	return "", fmt.Errorf("%w %q (want EC-P256, EC-P384, RSA-3072 or RSA-4096)", ErrUnknownKeyType, s)
}

// orDefault returns kt, or DefaultKeyType when kt is empty.
func (kt KeyType) orDefault() KeyType {
	if kt == "" {
		return DefaultKeyType
	}
	return kt
}

// GenerateSigner generates an in-memory key of type kt (empty means
// DefaultKeyType). It is for keys that never touch disk, such as the CA
// server's own TLS key.
func GenerateSigner(kt KeyType) (crypto.Signer, error) {
	p, ok := keyTypes[kt.orDefault()]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKeyType, kt)
	}
	s, err := keyutil.GenerateSigner(p.kty, p.crv, p.bits)
	if err != nil {
		return nil, wrapErr("generating %s key: %w", kt.orDefault(), err)
	}
	return s, nil
}

// Manager creates and loads CA signing keys. New returns the
// implementation for the configured backend: encrypted PEM files (soft
// keys) or a KMS/HSM reached through go.step.sm/crypto/kms.
//
// All methods are safe for concurrent use. They do not watch ctx once the
// backend call has started: KMS calls carry their own timeouts.
type Manager interface {
	// Create generates a new key named name and returns its signer and a
	// reference that Load accepts later (store it, not the name). It fails
	// with ErrKeyExists if name is taken, never replacing a key.
	Create(ctx context.Context, name string, kt KeyType) (crypto.Signer, string, error)
	// Load returns the signer of a key created (or imported) earlier. It
	// fails with ErrKeyNotFound, or ErrWrongPassphrase for a soft key that
	// does not decrypt.
	Load(ctx context.Context, ref string) (crypto.Signer, error)
	// Delete removes a key created (or imported) earlier, given its
	// reference: a key made for a change that was then thrown away (a
	// rotation step whose commit lost a race) must not linger. It fails
	// with ErrKeyNotFound when there is no such key, and with
	// ErrDeleteUnsupported when the backend cannot delete keys (the key
	// is then left for the operator; its name says which authority it was
	// made for).
	Delete(ctx context.Context, ref string) error
	// Import stores an existing private key (an operator's own root) under
	// name and returns its reference. Only soft keys support it; others
	// fail with ErrImportUnsupported.
	Import(ctx context.Context, name string, key crypto.Signer) (string, error)
	// Close releases the backend (a PKCS#11 session, KMS clients).
	Close() error
}

// Config selects and configures the key backend.
type Config struct {
	// KMSURI selects the backend. Empty or "softkms:" keeps keys in
	// encrypted PEM files under Dir. Anything else ("pkcs11:...",
	// "awskms:...", "cloudkms:...", "azurekms:...") is passed to
	// go.step.sm/crypto/kms; cloud backends must be linked in by
	// importing ca/keys/allkms.
	KMSURI string
	// Dir is where soft keys live. Required for soft keys; created with
	// mode 0700 if missing.
	Dir string
	// Passphrase encrypts soft keys at rest. Required for soft keys.
	Passphrase []byte
	// KDFIterations is the PBKDF2 iteration count of the soft keys this
	// manager writes; 0 means keypass.KDFIterations (600,000). A key is
	// read with the count it was written with. Only tests lower it
	// (server.TestOptions): at the default, a CA start spends about 7 s of
	// CPU under the race detector encrypting its keys.
	KDFIterations int
}

// New returns the key manager for cfg.
func New(ctx context.Context, cfg Config) (Manager, error) {
	if isSoft(cfg.KMSURI) {
		return newSoft(cfg)
	}
	return newKMS(ctx, cfg.KMSURI)
}

// IsSoft reports whether a KMS URI selects file-based soft keys (empty
// or "softkms:").
func IsSoft(uri string) bool { return isSoft(uri) }

// isSoft reports whether uri selects file-based soft keys.
func isSoft(uri string) bool {
	return uri == "" || strings.EqualFold(strings.TrimSuffix(uri, ":"), string(apiv1.SoftKMS))
}
