// Package allkms links the cloud KMS backends of go.step.sm/crypto into a
// binary, so that keys.New accepts "awskms:", "cloudkms:" and "azurekms:"
// URIs. Import it for its side effect from main:
//
//	import _ "github.com/signet-mesh/signet/ca/keys/allkms"
//
// It is a separate package because the three SDKs add about 30 MB to a
// binary and a minute to a cold race build; packages that only need soft
// keys or PKCS#11 (every test) do not pay for them.
package allkms

import (
	_ "go.step.sm/crypto/kms/awskms"   // AWS KMS
	_ "go.step.sm/crypto/kms/azurekms" // Azure Key Vault
	_ "go.step.sm/crypto/kms/cloudkms" // Google Cloud KMS
)
