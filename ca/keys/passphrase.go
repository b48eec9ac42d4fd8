package keys

import "github.com/signet-mesh/signet/internal/keypass"

// LoadPassphrase reads the soft-key passphrase from file (one trailing
// newline is dropped, as editors and `echo` add one) or, when file is
// empty, from the environment variable envVar. Keeping it out of flags
// keeps it out of `ps` and shell history. It is internal/keypass.Load,
// which the agent binary uses without linking this package.
func LoadPassphrase(file, envVar string) ([]byte, error) {
	return keypass.Load(file, envVar)
}
