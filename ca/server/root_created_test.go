package server

import (
	"context"
	"crypto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/keys"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// slowRootKeys makes root keys slowly (an HSM, an RSA-4096 key) and
// records when the last one was ready.
type slowRootKeys struct {
	keys.Manager
	mu    sync.Mutex
	ready time.Time
}

func (k *slowRootKeys) Create(ctx context.Context, name string, kt keys.KeyType) (crypto.Signer, string, error) {
	if !strings.HasPrefix(name, "root-") {
		return k.Manager.Create(ctx, name, kt)
	}
	time.Sleep(200 * time.Millisecond)
	s, ref, err := k.Manager.Create(ctx, name, kt)
	k.mu.Lock()
	k.ready = time.Now()
	k.mu.Unlock()
	return s, ref, err
}

// TestPreparedRootCreatedAtIsTheBundleChange: a prepared root's
// created_at is the instant of the transaction that put it in the trust
// bundle (issue 16 times the bundle fan-out from it): within the
// PrepareRoot call, after its key was made, and no later than an agent's
// sync stream is sent the new bundle. Listing the roots reports the same
// instant.
func TestPreparedRootCreatedAtIsTheBundleChange(t *testing.T) {
	km := &slowRootKeys{}
	c := startCA(t, testOpts{noSync: true, wrapKeys: func(m keys.Manager) keys.Manager { km.Manager = m; return km }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := openSync(ctx, t, c.attest(t, "created-at"))

	start := time.Now()
	prep, err := c.admin.PrepareRoot(ctx, &adminv1.PrepareRootRequest{})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	root := prep.GetAuthority()
	created := time.Unix(0, root.GetCreatedAtUnixNano())
	if created.Before(start) || created.After(end) {
		t.Fatalf("created_at %s is outside the PrepareRoot call [%s, %s]", created.Format(time.RFC3339Nano), start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano))
	}
	km.mu.Lock()
	ready := km.ready
	km.mu.Unlock()
	if created.Before(ready) {
		t.Fatalf("created_at %s is before the root's key was made (%s): it counts key generation as part of the bundle change", created.Format(time.RFC3339Nano), ready.Format(time.RFC3339Nano))
	}

	for {
		b := stream.nextBundle(t, "created-at")
		if !containsDER(b.GetX509Authorities(), root.GetCertificate()) {
			continue
		}
		if got := time.Now(); got.Before(created) {
			t.Fatalf("the new bundle reached the stream at %s, before created_at %s", got.Format(time.RFC3339Nano), created.Format(time.RFC3339Nano))
		}
		break
	}

	list, err := c.admin.ListAuthorities(ctx, &adminv1.ListAuthoritiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list.GetAuthorities() {
		if a.GetId() == root.GetId() {
			if a.GetCreatedAtUnixNano() != root.GetCreatedAtUnixNano() {
				t.Fatalf("ListAuthorities created_at %d, PrepareRoot returned %d", a.GetCreatedAtUnixNano(), root.GetCreatedAtUnixNano())
			}
			return
		}
	}
	t.Fatalf("root %s is not listed", root.GetId())
}
