// Package keys creates and loads the CA's signing keys through
// go.step.sm/crypto.
//
// By default keys are soft keys: generated in process and stored one per
// file under a directory, as encrypted PKCS #8 PEM (PBES2, PBKDF2,
// AES-256-CBC) with mode 0600. The passphrase comes from a file or an
// environment variable, never a flag:
//
//	pass, err := keys.LoadPassphrase(passFile, "SIGNET_KEY_PASSPHRASE")
//	if err != nil { ... }
//	km, err := keys.New(ctx, keys.Config{Dir: filepath.Join(dataDir, "keys"), Passphrase: pass})
//	if err != nil { ... }
//	defer km.Close()
//
//	signer, ref, err := km.Create(ctx, "root-1a2b", keys.KeyTypeECP256)
//	// store ref next to the certificate; after a restart:
//	signer, err = km.Load(ctx, ref)
//
// Any other KMSURI hands keys to go.step.sm/crypto/kms: "pkcs11:..." for an
// HSM, and, when the binary imports ca/keys/allkms, "awskms:...",
// "cloudkms:...;key-ring=projects/P/locations/L/keyRings/R" and
// "azurekms:...;vault=V". The key never leaves the device; the reference is
// the URI the KMS returns.
//
// # Caveats
//
// Soft keys are always tested; PKCS#11 is tested against SoftHSM when the
// softhsm2 package is installed. PKCS#11 needs cgo (without it the backend
// reports itself unavailable). The cloud backends are untested here: they
// need their cloud.
//
// Create never replaces an existing key: a name in use fails with
// ErrKeyExists. Callers name keys after what they are for ("intermediate-"
// and the authority ID), so a key whose authority was never stored can be
// found; ca/rotation deletes the keys of a step whose commit failed.
// Delete is not supported by every cloud KMS backend
// (ErrDeleteUnsupported).
package keys
