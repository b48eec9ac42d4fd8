package keys

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/pemutil"
)

func newSoftManager(t *testing.T, pass string) (Manager, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	m, err := New(context.Background(), Config{Dir: dir, Passphrase: []byte(pass)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m, dir
}

// TestSoftRoundTrip creates a key of each type, loads it back and checks it
// signs as the same key, and that the file on disk is private and encrypted.
func TestSoftRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, dir := newSoftManager(t, "correct horse")
	t.Run("types", func(t *testing.T) { testSoftTypes(t, ctx, m, dir) })
	// No temporary files are left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover file %s", e.Name())
		}
	}
}

func testSoftTypes(t *testing.T, ctx context.Context, m Manager, dir string) {
	for _, kt := range []KeyType{KeyTypeECP256, KeyTypeECP384, KeyTypeRSA3072, KeyTypeRSA4096} {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			name := "root-" + strings.ToLower(string(kt))
			signer, ref, err := m.Create(ctx, name, kt)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if want := name + ".pem"; ref != want {
				t.Errorf("ref = %q, want %q", ref, want)
			}
			loaded, err := m.Load(ctx, ref)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			type equaler interface{ Equal(crypto.PublicKey) bool }
			if !loaded.Public().(equaler).Equal(signer.Public()) {
				t.Errorf("loaded key differs from created key")
			}
			digest := sha256.Sum256([]byte("signet"))
			if _, err := loaded.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				t.Errorf("Sign with loaded key: %v", err)
			}

			path := filepath.Join(dir, ref)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Errorf("mode = %v, want 0600", got)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "ENCRYPTED PRIVATE KEY") {
				t.Errorf("key file is not an encrypted PKCS #8 PEM:\n%s", data[:40])
			}
			if _, err := pemutil.ParseKey(data); err == nil {
				t.Errorf("key file parsed without a password")
			}
		})
	}
}

func TestSoftErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, dir := newSoftManager(t, "right")
	_, ref, err := m.Create(ctx, "jwt-1", "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain.pem"), []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong, err := New(ctx, Config{Dir: dir, Passphrase: []byte("wrong")})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"wrong passphrase", func() error { _, err := wrong.Load(ctx, ref); return err }, ErrWrongPassphrase},
		{"missing key", func() error { _, err := m.Load(ctx, "nope.pem"); return err }, ErrKeyNotFound},
		{"clear-text key", func() error { _, err := m.Load(ctx, "plain.pem"); return err }, ErrNotEncrypted},
		{"ref escapes dir", func() error { _, err := m.Load(ctx, "../keys/"+ref); return err }, ErrInvalidName},
		{"empty ref", func() error { _, err := m.Load(ctx, ""); return err }, ErrInvalidName},
		{"name taken", func() error { _, _, err := m.Create(ctx, "jwt-1", KeyTypeECP256); return err }, ErrKeyExists},
		{"name with slash", func() error { _, _, err := m.Create(ctx, "a/b", KeyTypeECP256); return err }, ErrInvalidName},
		{"hidden name", func() error { _, _, err := m.Create(ctx, ".x", KeyTypeECP256); return err }, ErrInvalidName},
		{"unknown key type", func() error { _, _, err := m.Create(ctx, "k", "EC-P521"); return err }, ErrUnknownKeyType},
		{"delete missing key", func() error { return m.Delete(ctx, "nope.pem") }, ErrKeyNotFound},
		{"delete outside dir", func() error { return m.Delete(ctx, "../keys/"+ref) }, ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "keys: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestSoftDelete: a deleted key is gone from the directory and cannot be
// loaded; its name can be used again.
func TestSoftDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, dir := newSoftManager(t, "pass")
	_, ref, err := m.Create(ctx, "intermediate-0123456789abcdef", KeyTypeECP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, ref); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ref)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key file after Delete: %v, want it gone", err)
	}
	if _, err := m.Load(ctx, ref); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Load after Delete = %v, want ErrKeyNotFound", err)
	}
	if _, _, err := m.Create(ctx, "intermediate-0123456789abcdef", KeyTypeECP256); err != nil {
		t.Errorf("Create under a deleted key's name: %v", err)
	}
}

func TestImport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, _ := newSoftManager(t, "pw")
	key, err := GenerateSigner(KeyTypeECP384)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := m.Import(ctx, "imported-root", key)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	got, err := m.Load(ctx, ref)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Errorf("imported key differs after load")
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no passphrase", Config{Dir: t.TempDir()}, "passphrase required"},
		{"no dir", Config{Passphrase: []byte("x")}, "key directory"},
		{"softkms uri without passphrase", Config{KMSURI: "softkms:", Dir: t.TempDir()}, "passphrase required"},
		{"backend not linked", Config{KMSURI: "awskms:region=us-east-1"}, "not linked"},
		{"unknown scheme", Config{KMSURI: "nope:x"}, "kms uri"},
		// With cgo the module fails to load; without it the backend is a
		// stub. Either way New fails cleanly.
		{"pkcs11 without a module", Config{KMSURI: "pkcs11:module-path=/nonexistent/libp11.so;token=signet?pin-value=1234"}, "opening pkcs11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(ctx, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseKeyType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    KeyType
		wantErr bool
	}{
		{"", KeyTypeECP256, false},
		{"EC-P256", KeyTypeECP256, false},
		{"ec-p384", KeyTypeECP384, false},
		{"RSA-3072", KeyTypeRSA3072, false},
		{"rsa-4096", KeyTypeRSA4096, false},
		{"RSA-2048", "", true},
		{"ed25519", "", true},
	}
	for _, tt := range tests {
		got, err := ParseKeyType(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseKeyType(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrUnknownKeyType) {
			t.Errorf("ParseKeyType(%q) err = %v, want ErrUnknownKeyType", tt.in, err)
		}
	}
}

func TestLoadPassphrase(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("SIGNET_TEST_PASS", "from-env")
	tests := []struct {
		name    string
		file    string
		env     string
		want    string
		wantErr string
	}{
		{name: "file with newline", file: write("a", "s3cret\n"), want: "s3cret"},
		{name: "file with crlf", file: write("b", "s3cret\r\n"), want: "s3cret"},
		{name: "file keeps inner space", file: write("c", " two words \n"), want: " two words "},
		{name: "file wins over env", file: write("d", "file"), env: "SIGNET_TEST_PASS", want: "file"},
		{name: "env", env: "SIGNET_TEST_PASS", want: "from-env"},
		{name: "empty file", file: write("e", "\n"), wantErr: "empty"},
		{name: "missing file", file: filepath.Join(dir, "missing"), wantErr: "reading passphrase"},
		{name: "unset env", env: "SIGNET_TEST_UNSET", wantErr: "not set"},
		{name: "neither", wantErr: "passphrase required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadPassphrase(tt.file, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestKMSKeyName pins how signet names keys in each KMS, since those names
// cannot be exercised here without the KMS.
func TestKMSKeyName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri     string
		want    string
		wantErr bool
	}{
		{"pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=signet?pin-value=1234", "pkcs11:id=%d0%b6%b9%51%d3%13%29%43;object=root-1", false},
		{"awskms:region=eu-west-1", "awskms:name=root-1", false},
		{"azurekms:vault=signet", "azurekms:name=root-1", false},
		{"cloudkms:key-ring=projects/p/locations/global/keyRings/signet", "projects/p/locations/global/keyRings/signet/cryptoKeys/root-1", false},
		{"cloudkms:", "", true},
		{"yubikey:", "", true},
	}
	for _, tt := range tests {
		opts := apiv1.Options{URI: tt.uri}
		typ, err := opts.GetType()
		if err != nil {
			t.Fatal(err)
		}
		m := &kmsManager{typ: typ}
		if m.base, err = parseURI(tt.uri); err != nil {
			t.Fatal(err)
		}
		got, err := m.keyName("root-1")
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("keyName(%s) = %q, %v; want %q (err %v)", tt.uri, got, err, tt.want, tt.wantErr)
		}
		if typ == apiv1.PKCS11 {
			// The id must read back as the 8 bytes go.step.sm/crypto's
			// pkcs11 backend stores in CKA_ID.
			u, err := parseURI(got)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte("root-1"))
			if id := u.GetEncoded("id"); string(id) != string(sum[:8]) || u.Get("object") != "root-1" {
				t.Errorf("pkcs11 key uri %s reads back as id %x object %q", got, id, u.Get("object"))
			}
		}
	}
}
