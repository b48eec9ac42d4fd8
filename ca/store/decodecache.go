package store

import (
	"bytes"
	"slices"
	"sync"
)

// decodeCache keeps the decoded form of recently read records of one
// kind, with the bytes each was decoded from. GetNode and GetEntry look
// here first: when the stored bytes equal the cached ones, they return a
// copy of the cached record instead of decoding its JSON again. The node
// API reads the calling node and every entry it mints for on each call,
// and decoding was a tenth of a mint's allocations.
//
// Nothing needs invalidating: decoding is a function of the bytes alone,
// so a record that changed (other bytes) misses and is decoded afresh,
// and one that was deleted is not found before the cache is asked. Nor
// does a record depend on which store or transaction it came from, so one
// cache serves every store in the process. Callers own what they get (a
// copy whose slices are their own), as with a decoded record.
type decodeCache[T any] struct {
	clone func(*T) *T

	mu    sync.Mutex
	items map[string]decoded[T]
}

type decoded[T any] struct {
	raw []byte
	v   *T
}

// decodeCacheSize bounds each cache: a few MB at most, enough for the
// nodes and entries a busy CA mints for at once. A full cache drops one
// record at random to make room.
const decodeCacheSize = 2048

var (
	nodeCache  = &decodeCache[Node]{clone: cloneNode}
	entryCache = &decodeCache[Entry]{clone: cloneEntry}
)

// get returns a copy of the record decoded from data under key, if cached.
func (c *decodeCache[T]) get(key string, data []byte) (*T, bool) {
	c.mu.Lock()
	d, ok := c.items[key]
	c.mu.Unlock()
	if !ok || !bytes.Equal(d.raw, data) {
		return nil, false
	}
	return c.clone(d.v), true
}

// put caches v, decoded from data under key. It keeps a copy of v, so
// the caller may change its own.
func (c *decodeCache[T]) put(key string, data []byte, v *T) {
	d := decoded[T]{raw: bytes.Clone(data), v: c.clone(v)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.items == nil {
		c.items = make(map[string]decoded[T])
	}
	if _, ok := c.items[key]; !ok && len(c.items) >= decodeCacheSize {
		for k := range c.items { // a random one: map order is
			delete(c.items, k)
			break
		}
	}
	c.items[key] = d
}

// getCached is get through c.
func getCached[T any](t *boltTx, c *decodeCache[T], bucket []byte, key string) (*T, error) {
	data := t.tx.Bucket(bucket).Get([]byte(key))
	if data == nil {
		return nil, ErrNotFound
	}
	if v, ok := c.get(key, data); ok {
		return v, nil
	}
	v := new(T)
	if err := decodeRecord(bucket, []byte(key), data, v); err != nil {
		return nil, err
	}
	c.put(key, data, v)
	return v, nil
}

// cloneNode and cloneEntry copy a record and every slice in it (strings
// and times are immutable). TestDecodeCacheClones fails when a field they
// would share is added to the types.
func cloneNode(n *Node) *Node {
	c := *n
	c.Selectors = slices.Clone(n.Selectors)
	return &c
}

func cloneEntry(e *Entry) *Entry {
	c := *e
	c.Selectors = slices.Clone(e.Selectors)
	c.DNSNames = slices.Clone(e.DNSNames)
	c.FederatesWith = slices.Clone(e.FederatesWith)
	return &c
}
