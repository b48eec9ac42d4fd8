//go:build cgo

package main

// cgoEnabled: PKCS#11 (kms_uri pkcs11:) works only in a cgo build.
const cgoEnabled = true
