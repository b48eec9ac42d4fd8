//go:build cloudkms

package main

// Cloud KMS backends (awskms:, cloudkms:, azurekms: key manager URIs) are
// linked only with `-tags cloudkms`: their SDKs triple the binary and add
// about 14 MB to every agent's resident memory, and agents never sign.
// softkms and PKCS#11 are always available.
import _ "github.com/signet-mesh/signet/ca/keys/allkms"
