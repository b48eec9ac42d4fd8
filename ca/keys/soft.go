package keys

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"

	"github.com/signet-mesh/signet/internal/keypass"
)

// softManager keeps each key in Dir/<name>.pem, encrypted with the
// passphrase. It holds no state besides its config, so it is safe for
// concurrent use.
type softManager struct {
	dir        string
	pass       []byte
	iterations int // PBKDF2 iterations of the keys it writes (Config.KDFIterations)
}

func newSoft(cfg Config) (*softManager, error) {
	if cfg.Dir == "" {
		return nil, wrapErr("soft keys need a key directory")
	}
	if len(cfg.Passphrase) == 0 {
		return nil, ErrPassphraseRequired
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, wrapErr("creating key directory: %w", err)
	}
	return &softManager{dir: cfg.Dir, pass: append([]byte(nil), cfg.Passphrase...), iterations: cfg.KDFIterations}, nil
}

func (m *softManager) Create(_ context.Context, name string, kt KeyType) (crypto.Signer, string, error) {
	p, ok := keyTypes[kt.orDefault()]
	if !ok {
		return nil, "", fmt.Errorf("%w %q", ErrUnknownKeyType, kt)
	}
	if err := checkName(name); err != nil {
		return nil, "", err
	}
	signer, err := keyutil.GenerateSigner(p.kty, p.crv, p.bits)
	if err != nil {
		return nil, "", wrapErr("generating %s key: %w", kt.orDefault(), err)
	}
	ref, err := m.write(name, signer)
	if err != nil {
		return nil, "", err
	}
	return signer, ref, nil
}

func (m *softManager) Import(_ context.Context, name string, key crypto.Signer) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return m.write(name, key)
}

// write encrypts key (keypass.EncryptPKCS8: PBES2, PBKDF2-HMAC-SHA256
// and AES-256-CBC) and stores it as <name>.pem; the file name is the
// reference.
func (m *softManager) write(name string, key crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", wrapErr("encoding key %s: %v", name, err)
	}
	block, err := keypass.EncryptPKCS8(der, m.pass, m.iterations)
	if err != nil {
		return "", wrapErr("encrypting key %s: %v", name, err)
	}
	ref := name + ".pem"
	if err := writeNewFile(m.dir, ref, pem.EncodeToMemory(block)); err != nil {
		return "", err
	}
	return ref, nil
}

func (m *softManager) Load(_ context.Context, ref string) (crypto.Signer, error) {
	if err := checkName(ref); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(m.dir, ref))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrKeyNotFound, ref)
	}
	if err != nil {
		return nil, wrapErr("reading key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: %s holds no PEM block", ErrWrongPassphrase, ref)
	}
	if block.Type != keypass.EncryptedPEMType {
		return nil, fmt.Errorf("%w: %s is %q", ErrNotEncrypted, ref, block.Type)
	}
	// A wrong passphrase is usually caught by the CBC padding check; the
	// rare time it is not, the decrypted bytes do not parse. Both mean the
	// same thing to the operator.
	der, err := pemutil.DecryptPKCS8PrivateKey(block.Bytes, m.pass)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrWrongPassphrase, ref)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrWrongPassphrase, ref)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, wrapErr("key %s of type %T cannot sign", ref, key)
	}
	return signer, nil
}

// Delete removes the key file and syncs the directory, so a deleted key
// does not come back after a crash.
func (m *softManager) Delete(_ context.Context, ref string) error {
	if err := checkName(ref); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(m.dir, ref))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrKeyNotFound, ref)
	}
	if err != nil {
		return wrapErr("deleting key: %w", err)
	}
	return syncDir(m.dir)
}

func (m *softManager) Close() error { return nil }

// checkName accepts plain file names only, so neither a key name nor a
// stored reference can point outside the key directory.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%w %q", ErrInvalidName, name)
	}
	return nil
}

// writeNewFile writes data to dir/name with mode 0600, atomically and
// durably, and never replaces an existing file: the data goes to a
// temporary file that is synced and then hard-linked into place (a rename
// that fails if the target exists), and the directory is synced so the new
// name survives a crash.
func writeNewFile(dir, name string, data []byte) (err error) {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*") // mode 0600
	if err != nil {
		return wrapErr("writing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return wrapErr("writing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return wrapErr("syncing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return wrapErr("writing key: %w", err)
	}
	if err := os.Link(tmp.Name(), filepath.Join(dir, name)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrKeyExists, name)
		}
		return wrapErr("writing key: %w", err)
	}
	return syncDir(dir)
}

// syncDir makes a change to dir's names durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return wrapErr("syncing key directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return wrapErr("syncing key directory: %w", err)
	}
	return nil
}

// WriteSoftKeyFile stores data, a soft key file as Create writes it (an
// encrypted PEM, which is checked), as dir/ref: a key another CA replica
// made and shared, encrypted, through the store. A file already there is
// kept (it holds the same key). Load then reads it as any other.
func WriteSoftKeyFile(dir, ref string, data []byte) error {
	if err := checkName(ref); err != nil {
		return err
	}
	if block, _ := pem.Decode(data); block == nil || block.Type != keypass.EncryptedPEMType {
		return fmt.Errorf("%w: the shared key %s is not an encrypted PEM", ErrNotEncrypted, ref)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return wrapErr("creating key directory: %w", err)
	}
	if err := writeNewFile(dir, ref, data); err != nil && !errors.Is(err, ErrKeyExists) {
		return err
	}
	return nil
}
