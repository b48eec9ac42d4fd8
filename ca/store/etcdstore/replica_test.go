package etcdstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/store/etcdstore"
)

// TestReplicaLeaderElection: the only candidate leads, Leader names it,
// and it resigns (and says so) when Run ends.
func TestReplicaLeaderElection(t *testing.T) {
	st := openStore(t, etcdstore.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	leading := make(chan bool, 4)
	r := st.NewReplica("x", time.Second, func(l bool) { leading <- l })
	if err := r.Claim(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, func(context.Context) error { return nil }, func(err error) { t.Error(err) })
	}()
	select {
	case l := <-leading:
		if !l {
			t.Fatal("first leadership change is false")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the only candidate did not lead")
	}
	if name, err := st.Leader(t.Context()); err != nil || name != "x" {
		t.Errorf("Leader = %q, %v; want x", name, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if l := <-leading; l {
		t.Error("no false when Run ended")
	}
	if name, err := st.Leader(t.Context()); err != nil || name != "" {
		t.Errorf("Leader after Run ended = %q, %v; want none (it resigned)", name, err)
	}
}

// TestReplicaNameTaken: a second replica cannot claim a name a live one
// holds, and can once that one released it.
func TestReplicaNameTaken(t *testing.T) {
	prefix := newPrefix(t)
	a := openStore(t, etcdstore.Options{Prefix: prefix})
	b := openStore(t, etcdstore.Options{Prefix: prefix})
	ra := a.NewReplica("x", time.Second, nil)
	if err := ra.Claim(t.Context()); err != nil {
		t.Fatal(err)
	}
	rb := b.NewReplica("x", time.Second, nil)
	if err := rb.Claim(t.Context()); !errors.Is(err, etcdstore.ErrNameTaken) {
		t.Fatalf("second claim of x: %v, want ErrNameTaken", err)
	}
	ra.Release()
	if err := rb.Claim(t.Context()); err != nil {
		t.Fatalf("claim of x after release: %v", err)
	}
	rb.Release()
}
