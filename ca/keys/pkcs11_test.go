package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// softHSMModule is where Debian's softhsm2 package puts its PKCS#11
// module.
const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// TestPKCS11SoftHSM runs the KMS path against SoftHSM, a software PKCS#11
// token, when it is installed (apt-get install softhsm2); it checks the
// key names signet gives an HSM actually work. Skipped otherwise, and
// without cgo.
func TestPKCS11SoftHSM(t *testing.T) {
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Skip("softhsm2-util not on PATH")
	}
	if _, err := os.Stat(softHSMModule); err != nil {
		t.Skip("SoftHSM module not installed")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	if out, err := exec.Command(util, "--init-token", "--free", "--label", "signet", "--pin", "1234", "--so-pin", "5678").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}

	ctx := context.Background()
	m, err := New(ctx, Config{KMSURI: "pkcs11:module-path=" + softHSMModule + ";token=signet?pin-value=1234"})
	if err != nil {
		if strings.Contains(err.Error(), "cgo") {
			t.Skip("built without cgo: ", err)
		}
		t.Fatalf("New: %v", err)
	}
	defer m.Close()

	for _, kt := range []KeyType{KeyTypeECP256, KeyTypeRSA3072} {
		t.Run(string(kt), func(t *testing.T) {
			name := "root-" + strings.ToLower(string(kt))
			signer, ref, err := m.Create(ctx, name, kt)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if !strings.HasPrefix(ref, "pkcs11:") || !strings.Contains(ref, "object="+name) {
				t.Errorf("ref = %q, want a pkcs11 URI naming %s", ref, name)
			}
			loaded, err := m.Load(ctx, ref)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			digest := sha256.Sum256([]byte("signet"))
			sig, err := loaded.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			switch pub := signer.Public().(type) {
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(pub, digest[:], sig) {
					t.Error("signature by the loaded key does not verify with the created key")
				}
			case *rsa.PublicKey:
				if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
					t.Errorf("signature does not verify: %v", err)
				}
			}
			if _, _, err := m.Create(ctx, name, kt); !errors.Is(err, ErrKeyExists) {
				t.Errorf("second Create = %v, want ErrKeyExists", err)
			}
			// A key of a discarded rotation step is deleted from the
			// token, not left behind.
			if err := m.Delete(ctx, ref); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := m.Load(ctx, ref); !errors.Is(err, ErrKeyNotFound) {
				t.Errorf("Load after Delete = %v, want ErrKeyNotFound", err)
			}
		})
	}
	if _, err := m.Import(ctx, "x", nil); !errors.Is(err, ErrImportUnsupported) {
		t.Errorf("Import = %v, want ErrImportUnsupported", err)
	}
}
