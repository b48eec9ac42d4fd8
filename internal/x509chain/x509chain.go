// Package x509chain verifies certificate chains with as few signature
// checks as it can.
//
// crypto/x509 builds every chain it can from the intermediates a peer
// presents, with a signature check for each candidate issuer it tries.
// Across a root rotation signet's chains carry each intermediate twice:
// signed by the new root, and cross-signed by the old one for peers that
// hold only the old root. Verifying the CA's chain [leaf, intermediate,
// cross-signed intermediate] then takes four ECDSA checks where two do,
// and on a fleet reconnecting to its CA those checks are most of the TLS
// work on both sides. Shortest tries the smallest sets of intermediates
// first; any chain it finds is one crypto/x509 would have found with all
// of them.
package x509chain

import "crypto/x509"

// maxSingles bounds the one-intermediate attempts: a longer chain than
// signet makes goes straight to all of its intermediates.
const maxSingles = 3

// Shortest calls verify with subsets of intermediates, smallest first,
// and returns the first success: none (the roots issued the leaf), each
// one alone, then all of them. When every attempt fails it returns the
// last one's error, that of the whole chain.
func Shortest[T any](intermediates []*x509.Certificate, verify func([]*x509.Certificate) (T, error)) (T, error) {
	v, err := verify(nil)
	if err == nil || len(intermediates) == 0 {
		return v, err
	}
	if len(intermediates) > 1 && len(intermediates) <= maxSingles {
		for i := range intermediates {
			if v, err := verify(intermediates[i : i+1]); err == nil {
				return v, nil
			}
		}
	}
	return verify(intermediates)
}
