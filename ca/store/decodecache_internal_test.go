package store

import (
	"reflect"
	"testing"
)

// TestDecodeCacheClones fails when Node or Entry gains a field that a
// shallow copy would share (a slice, map or pointer) and cloneNode or
// cloneEntry does not copy: callers would then change the cached record
// through what GetNode or GetEntry returned.
func TestDecodeCacheClones(t *testing.T) {
	tests := []struct {
		name   string
		typ    reflect.Type
		cloned []string
	}{
		{name: "Node", typ: reflect.TypeFor[Node](), cloned: []string{"Selectors"}},
		{name: "Entry", typ: reflect.TypeFor[Entry](), cloned: []string{"Selectors", "DNSNames", "FederatesWith"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for f := range tt.typ.Fields() {
				switch f.Type.Kind() {
				case reflect.Slice, reflect.Map, reflect.Pointer, reflect.Interface, reflect.Array, reflect.Struct:
					if f.Type == reflect.TypeFor[[]string]() && contains(tt.cloned, f.Name) {
						continue
					}
					if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == "time" {
						continue // immutable value
					}
					t.Errorf("%s.%s (%s) is not copied by its clone function in decodecache.go", tt.name, f.Name, f.Type)
				}
			}
		})
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
