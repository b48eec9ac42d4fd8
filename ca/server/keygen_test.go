package server

import (
	"context"
	"crypto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/signet-mesh/signet/ca/keys"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// heldKeys holds the creation of root keys, once armed, until released.
type heldKeys struct {
	keys.Manager
	armed            atomic.Bool
	entered, release chan struct{}
	once             sync.Once
}

func (k *heldKeys) Create(ctx context.Context, name string, kt keys.KeyType) (crypto.Signer, string, error) {
	if k.armed.Load() && strings.HasPrefix(name, "root-") {
		k.once.Do(func() { close(k.entered) })
		<-k.release
	}
	return k.Manager.Create(ctx, name, kt)
}

// TestMintNotBlockedByRootKeyGeneration: while `root prepare` waits for
// its key (a slow HSM, an RSA-4096 key), agents keep minting over the node
// API: the key is made with no store transaction open.
func TestMintNotBlockedByRootKeyGeneration(t *testing.T) {
	held := &heldKeys{entered: make(chan struct{}), release: make(chan struct{})}
	c := startCA(t, testOpts{wrapKeys: func(km keys.Manager) keys.Manager { held.Manager = km; return held }})
	n := c.attest(t, "busy")
	entry := c.entry(t, "spiffe://example.org/busy", n.id.String())
	ctx := context.Background()

	held.armed.Store(true) // the first start made its root already
	prepared := make(chan error, 1)
	go func() {
		_, err := c.admin.PrepareRoot(ctx, &adminv1.PrepareRootRequest{})
		prepared <- err
	}()
	select {
	case <-held.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("root prepare never reached key generation")
	}
	for i := range 10 {
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := n.client.MintX509SVIDs(mctx, &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: entry, Csr: csr(t, newKey(t))}}})
		cancel()
		if err != nil || codes.Code(resp.Results[0].Code) != codes.OK {
			t.Fatalf("mint %d while the root key is being made: %v %v", i, err, resp)
		}
	}
	select {
	case err := <-prepared:
		t.Fatalf("root prepare returned (%v) while its key generation was held", err)
	default:
	}
	close(held.release)
	select {
	case err := <-prepared:
		if err != nil {
			t.Fatalf("root prepare: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("root prepare did not finish once its key was made")
	}
}
