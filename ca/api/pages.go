package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Paging of the admin lists: no response grows with the registry.
const (
	// DefaultPageSize is the page size of a request that sets none.
	DefaultPageSize = 1000
	// MaxPageSize caps a requested page size.
	MaxPageSize = 10000
	// MaxPageBytes bounds the items of one page, whatever their number:
	// a page ends at the first item that takes it past this size, so a
	// response stays far below gRPC's 4 MiB default with the largest
	// entries (about 20 KiB each).
	MaxPageBytes = 2 << 20
)

// pageSize is the number of items a request may get.
func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, status.Errorf(codes.InvalidArgument, "page_size: must not be negative, got %d", n)
	case n == 0:
		return DefaultPageSize, nil
	case n > MaxPageSize:
		return MaxPageSize, nil
	}
	return int(n), nil
}

// The page token is opaque to clients: base64 of the JSON of the last
// item's key in the listing's order. Listings are keyset paged (each page
// starts after the key of the last item returned), so items created or
// deleted between pages shift nothing: an item that exists throughout
// the listing is returned exactly once.

func encodePageToken(key any) string {
	b, err := json.Marshal(key)
	if err != nil {
		panic(fmt.Sprintf("api: encoding page token: %v", err)) // keys are plain structs
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePageToken fills key from token; an empty token leaves key zero
// and returns false.
func decodePageToken(token string, key any) (bool, error) {
	if token == "" {
		return false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err == nil {
		err = json.Unmarshal(b, key)
	}
	if err != nil {
		return false, status.Error(codes.InvalidArgument, "page_token: not a token from this listing (pass next_page_token as it came)")
	}
	return true, nil
}

// takePage returns the first items (in listing order) that come after
// the token's key: at most size, and no more than MaxPageBytes, but at
// least one. next is the token of the following page, empty at the end.
func takePage[T any, M proto.Message](items []T, after func(T) bool, conv func(T) M, key func(T) any, size int) (page []M, next string) {
	bytes := 0
	var last T
	for _, it := range items {
		if !after(it) {
			continue
		}
		m := conv(it)
		n := proto.Size(m) + 8
		if len(page) == size || (len(page) > 0 && bytes+n > MaxPageBytes) {
			return page, encodePageToken(key(last))
		}
		page = append(page, m)
		bytes += n
		last = it
	}
	return page, ""
}
