package nodesvid

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/internal/nodeapi"
)

// scriptedCA answers each RenewNodeSVID with the next of errs and records
// the key it was sent.
type scriptedCA struct {
	errs []error
	keys []crypto.Signer
}

func (ca *scriptedCA) RenewNodeSVID(_ context.Context, key crypto.Signer) (*x509svid.SVID, error) {
	ca.keys = append(ca.keys, key)
	err := ca.errs[0]
	ca.errs = ca.errs[1:]
	return nil, err
}

// TestRenewRefusedKeySentAgain: a renewal the CA refused unseen
// (ResourceExhausted) is tried again with the same key; after any other
// failure the next attempt makes a new one.
func TestRenewRefusedKeySentAgain(t *testing.T) {
	ca := &scriptedCA{errs: []error{
		nodeapi.Overloaded("the CA is at its limit", time.Second),
		status.Error(codes.Unavailable, "connection refused"),
		status.Error(codes.Unavailable, "connection refused"),
	}}
	made := 0
	n := New(Config{CA: ca, NewKey: func() (crypto.Signer, error) {
		made++
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}})
	for range 3 {
		if err := n.renewOnce(context.Background()); err == nil {
			t.Fatal("renewOnce succeeded, want the CA's error")
		}
	}
	if ca.keys[1] != ca.keys[0] {
		t.Error("the attempt after a refusal sent a new key, want the refused one")
	}
	if ca.keys[2] == ca.keys[1] {
		t.Error("the attempt after an unavailable CA sent the same key, want a new one")
	}
	if made != 2 {
		t.Errorf("%d keys made for 3 attempts, want 2", made)
	}
}
