package keypass

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
)

// KDFIterations is the PBKDF2 iteration count of the keys signet
// encrypts at rest: OWASP's recommendation for PBKDF2-HMAC-SHA256, and
// what pemutil writes.
const KDFIterations = 600_000

// EncryptedPEMType is the PEM type of an encrypted PKCS #8 key (RFC 7468
// section 11).
const EncryptedPEMType = "ENCRYPTED PRIVATE KEY"

// Object identifiers of PBES2 (RFC 8018) as EncryptPKCS8 writes it.
var (
	oidPBES2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// encryptedPrivateKeyInfo is RFC 5958's EncryptedPrivateKeyInfo with
// PBES2 parameters (RFC 8018 appendix A.4).
type encryptedPrivateKeyInfo struct {
	Algorithm     pbes2Algorithm
	EncryptedData []byte
}

type pbes2Algorithm struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters pbes2Params
}

type pbes2Params struct {
	KeyDerivationFunc pbkdf2Algorithm
	EncryptionScheme  cbcAlgorithm
}

type pbkdf2Algorithm struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters pbkdf2Params
}

// pbkdf2Params leaves out the optional keyLength, as openssl and pemutil
// do: the cipher fixes it.
type pbkdf2Params struct {
	Salt           []byte
	IterationCount int
	PRF            pkix.AlgorithmIdentifier
}

type cbcAlgorithm struct {
	Algorithm asn1.ObjectIdentifier
	IV        []byte
}

// EncryptPKCS8 encrypts a PKCS #8 private key (DER) with pass, as
// PBES2: PBKDF2-HMAC-SHA256 over a random 16-byte salt, then AES-256-CBC.
// openssl reads it, and so does pemutil.DecryptPKCS8PrivateKey, which
// takes the iteration count from the key.
//
// iterations 0 means KDFIterations. Tests pass fewer: at the default, one
// encryption is a second of CPU under the race detector, and every CA a
// test starts writes three keys.
func EncryptPKCS8(der, pass []byte, iterations int) (*pem.Block, error) {
	if iterations == 0 {
		iterations = KDFIterations
	}
	if iterations < 0 {
		return nil, fmt.Errorf("keys: encrypting key: negative PBKDF2 iteration count %d", iterations)
	}
	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	rand.Read(salt)
	rand.Read(iv)
	key, err := pbkdf2.Key(sha256.New, string(pass), salt, iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("keys: deriving key encryption key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keys: encrypting key: %w", err)
	}
	// PKCS #7 padding (RFC 8018 section 6.2.1): always 1 to 16 bytes.
	pad := aes.BlockSize - len(der)%aes.BlockSize
	data := make([]byte, len(der)+pad)
	copy(data, der)
	for i := len(der); i < len(data); i++ {
		data[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, data)
	info, err := asn1.Marshal(encryptedPrivateKeyInfo{
		Algorithm: pbes2Algorithm{
			Algorithm: oidPBES2,
			Parameters: pbes2Params{
				KeyDerivationFunc: pbkdf2Algorithm{
					Algorithm: oidPBKDF2,
					Parameters: pbkdf2Params{
						Salt:           salt,
						IterationCount: iterations,
						PRF:            pkix.AlgorithmIdentifier{Algorithm: oidHMACWithSHA256, Parameters: asn1.NullRawValue},
					},
				},
				EncryptionScheme: cbcAlgorithm{Algorithm: oidAES256CBC, IV: iv},
			},
		},
		EncryptedData: data,
	})
	if err != nil {
		return nil, fmt.Errorf("keys: encoding encrypted key: %w", err)
	}
	return &pem.Block{Type: EncryptedPEMType, Bytes: info}, nil
}
