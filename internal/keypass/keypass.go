// Package keypass reads the passphrase that encrypts keys at rest, the
// CA's soft keys (ca/keys) and the agent's node key, and encrypts them
// with it (EncryptPKCS8). It is a leaf of its own so that the agent binary
// reads its passphrase and writes its key without linking the CA's key
// managers and their KMS clients.
package keypass

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// ErrRequired: no passphrase file and no environment variable was given.
// ca/keys re-exports it as ErrPassphraseRequired; its text keeps the
// "keys:" prefix that errors have always had.
var ErrRequired = errors.New("keys: passphrase required for soft keys")

// Load reads the passphrase from file (one trailing newline is dropped, as
// editors and `echo` add one) or, when file is empty, from the
// environment variable envVar. Keeping it out of flags keeps it out of
// `ps` and shell history.
func Load(file, envVar string) ([]byte, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("keys: reading passphrase: %w", err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		if len(b) == 0 {
			return nil, fmt.Errorf("keys: passphrase file %s is empty", file)
		}
		return b, nil
	case envVar != "":
		v, ok := os.LookupEnv(envVar)
		if !ok || v == "" {
			return nil, fmt.Errorf("keys: passphrase: environment variable %s is not set", envVar)
		}
		return []byte(v), nil
	default:
		return nil, ErrRequired
	}
}
