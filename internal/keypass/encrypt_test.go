package keypass

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"testing"

	"go.step.sm/crypto/pemutil"
)

func testKeyDER(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestEncryptPKCS8ReadByPemutil: a key EncryptPKCS8 wrote decrypts with
// pemutil (which signet read keys with before, and which takes the
// iteration count from the key) to the same bytes, and not with another
// passphrase.
func TestEncryptPKCS8ReadByPemutil(t *testing.T) {
	der := testKeyDER(t)
	for _, iter := range []int{1000, 1} {
		block, err := EncryptPKCS8(der, []byte("correct horse"), iter)
		if err != nil {
			t.Fatal(err)
		}
		if block.Type != "ENCRYPTED PRIVATE KEY" {
			t.Errorf("PEM type %q", block.Type)
		}
		got, err := pemutil.DecryptPKCS8PrivateKey(block.Bytes, []byte("correct horse"))
		if err != nil {
			t.Fatalf("%d iterations: pemutil cannot decrypt: %v", iter, err)
		}
		if !bytes.Equal(got, der) {
			t.Errorf("%d iterations: decrypted key differs from the one encrypted", iter)
		}
		if got, err := pemutil.DecryptPKCS8PrivateKey(block.Bytes, []byte("battery staple")); err == nil {
			if _, err := x509.ParsePKCS8PrivateKey(got); err == nil {
				t.Errorf("%d iterations: a wrong passphrase decrypted the key", iter)
			}
		}
	}
	if _, err := EncryptPKCS8(der, []byte("x"), -1); err == nil {
		t.Error("a negative iteration count was accepted")
	}
}

// TestEncryptPKCS8SameFormAsPemutil: at the default count the key is the
// same ASN.1 as pemutil's own encryption (PBES2, PBKDF2-HMAC-SHA256 with
// 600,000 iterations and a 16-byte salt, AES-256-CBC), so files written
// before and after read the same everywhere; only salt, IV and ciphertext
// differ.
func TestEncryptPKCS8SameFormAsPemutil(t *testing.T) {
	der := testKeyDER(t)
	ours, err := EncryptPKCS8(der, []byte("pass"), 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := pemutil.EncryptPKCS8PrivateKey(rand.Reader, der, []byte("pass"), pemutil.DefaultEncCipher)
	if err != nil {
		t.Fatal(err)
	}
	if len(ours.Bytes) != len(theirs.Bytes) {
		t.Errorf("encoded length %d, pemutil's %d", len(ours.Bytes), len(theirs.Bytes))
	}
	var a, b encryptedPrivateKeyInfo
	for _, x := range []struct {
		der []byte
		v   *encryptedPrivateKeyInfo
	}{{ours.Bytes, &a}, {theirs.Bytes, &b}} {
		rest, err := asn1.Unmarshal(x.der, x.v)
		if err != nil || len(rest) != 0 {
			t.Fatalf("parsing %x: %v (%d bytes left)", x.der, err, len(rest))
		}
	}
	if a.Algorithm.Parameters.KeyDerivationFunc.Parameters.IterationCount != KDFIterations {
		t.Errorf("default iteration count %d, want %d", a.Algorithm.Parameters.KeyDerivationFunc.Parameters.IterationCount, KDFIterations)
	}
	// Blank what is random, then the two must be equal byte for byte.
	for _, v := range []*encryptedPrivateKeyInfo{&a, &b} {
		p := &v.Algorithm.Parameters
		if len(p.KeyDerivationFunc.Parameters.Salt) != 16 || len(p.EncryptionScheme.IV) != 16 {
			t.Errorf("salt %d bytes, IV %d bytes; want 16 and 16", len(p.KeyDerivationFunc.Parameters.Salt), len(p.EncryptionScheme.IV))
		}
		p.KeyDerivationFunc.Parameters.Salt = nil
		p.EncryptionScheme.IV = nil
		v.EncryptedData = nil
	}
	ea, _ := asn1.Marshal(a)
	eb, _ := asn1.Marshal(b)
	if !bytes.Equal(ea, eb) {
		t.Errorf("algorithm parameters differ from pemutil's:\n ours   %x\n theirs %x", ea, eb)
	}
}
