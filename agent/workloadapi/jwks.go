package workloadapi

import (
	"cmp"
	"encoding/json"
	"slices"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
)

// marshalJWKS encodes b as an RFC 7517 JWK Set, as jwtbundle.Bundle.Marshal
// does, but with keys ordered by key ID: the same bundle then always
// encodes to the same bytes, so a stream can tell an unchanged bundle from
// a new one by comparing messages.
func marshalJWKS(b *jwtbundle.Bundle) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for kid, key := range b.JWTAuthorities() {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: key, KeyID: kid})
	}
	slices.SortFunc(set.Keys, func(a, b jose.JSONWebKey) int { return cmp.Compare(a.KeyID, b.KeyID) })
	return json.Marshal(set)
}
