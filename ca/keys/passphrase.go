package keys

import (
	"bytes"
	"os"
)

// LoadPassphrase reads the soft-key passphrase from file (one trailing
// newline is dropped, as editors and `echo` add one) or, when file is
// empty, from the environment variable envVar. Keeping it out of flags
// keeps it out of `ps` and shell history.
func LoadPassphrase(file, envVar string) ([]byte, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, wrapErr("reading passphrase: %w", err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		if len(b) == 0 {
			return nil, wrapErr("passphrase file %s is empty", file)
		}
		return b, nil
	case envVar != "":
		v, ok := os.LookupEnv(envVar)
		if !ok || v == "" {
			return nil, wrapErr("passphrase: environment variable %s is not set", envVar)
		}
		return []byte(v), nil
	default:
		return nil, ErrPassphraseRequired
	}
}
