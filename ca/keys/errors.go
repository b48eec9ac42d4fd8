package keys

import (
	"errors"
	"fmt"

	"github.com/signet-mesh/signet/internal/keypass"
)

var (
	// ErrUnknownKeyType: the key type is not one of the KeyType constants.
	ErrUnknownKeyType = errors.New("keys: unknown key type")
	// ErrPassphraseRequired: soft keys are encrypted at rest, so New needs
	// a passphrase (see LoadPassphrase).
	ErrPassphraseRequired = keypass.ErrRequired
	// ErrWrongPassphrase: a key file could not be decrypted with the
	// configured passphrase (or it is corrupt).
	ErrWrongPassphrase = errors.New("keys: wrong passphrase or corrupt key file")
	// ErrKeyExists: Create was asked for a name that already holds a key.
	// Keys are never overwritten, so a root key cannot be lost by mistake.
	ErrKeyExists = errors.New("keys: key already exists")
	// ErrKeyNotFound: Load was given a reference to a key that does not
	// exist.
	ErrKeyNotFound = errors.New("keys: key not found")
	// ErrInvalidName: a key name or reference is empty or would leave the
	// key directory.
	ErrInvalidName = errors.New("keys: invalid key name")
	// ErrNotEncrypted: a soft key file is stored in clear text.
	ErrNotEncrypted = errors.New("keys: key file is not encrypted")
	// ErrDeleteUnsupported: the key manager cannot delete keys (a cloud
	// KMS whose go.step.sm/crypto backend has no delete).
	ErrDeleteUnsupported = errors.New("keys: deleting keys is not supported by this key manager")
	// ErrImportUnsupported: the key manager cannot take an existing
	// private key (KMS and HSM keys are created inside the device).
	ErrImportUnsupported = errors.New("keys: importing keys is not supported by this key manager")
)

// wrapErr prefixes err with the package name, as every error this package
// returns is.
func wrapErr(format string, args ...any) error {
	return fmt.Errorf("keys: "+format, args...)
}
