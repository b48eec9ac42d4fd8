package workloadapi

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
)

// marshalJWKS encodes b as an RFC 7517 JWK Set, as jwtbundle.Bundle.Marshal
// does, but with keys ordered by key ID: the same bundle then always
// encodes to the same bytes, so a stream can tell an unchanged bundle from
// a new one by comparing messages.
func marshalJWKS(b *jwtbundle.Bundle) ([]byte, error) {
	// The key IDs are sorted, not the JSONWebKeys: a sort of a struct
	// slice instantiates its own copy of the generic sort, about 14 KB of
	// binary every agent maps (issue 19).
	keys := b.JWTAuthorities()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: keys[kid], KeyID: kid})
	}
	return json.Marshal(set)
}
