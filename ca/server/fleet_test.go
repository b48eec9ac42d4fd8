package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/api"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// TestNodeAPILargeRequest: the node API reads each agent connection
// through a small buffer (fleet.go); a request many times its size that
// spans frames and TLS records, the largest mint batch, arrives whole and
// every SVID in it is signed.
func TestNodeAPILargeRequest(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	n := c.attest(t, "large")
	id := c.entry(t, "spiffe://example.org/large/w", n.id.String())
	req := &nodev1.MintX509SVIDsRequest{}
	for range api.MaxMintBatch {
		req.Params = append(req.Params, &nodev1.MintX509SVIDParams{EntryId: id, Csr: csr(t, newKey(t))})
	}
	resp, err := n.client.MintX509SVIDs(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var codes []int32
	for _, r := range resp.GetResults() {
		codes = append(codes, r.GetCode())
	}
	if diff := cmp.Diff(make([]int32, api.MaxMintBatch), codes); diff != "" {
		t.Errorf("result codes of a batch of %d (-want +got):\n%s", api.MaxMintBatch, diff)
	}
}

// TestNodeAPINoHeaderTable: the node API offers agents no HPACK dynamic
// table (fleet.go), so every request's headers arrive literally. Many
// calls on one connection, each with headers of its own (a deadline, a
// metadata value), all get their answers, errors included.
func TestNodeAPINoHeaderTable(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	n := c.attest(t, "headers")
	id := c.entry(t, "spiffe://example.org/headers/w", n.id.String())
	for i := range 40 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(30+i)*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-signet-test", strings.Repeat("h", 100+i))
		if i%2 == 1 {
			_, err := n.client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("call %d: empty mint batch: got %v, want InvalidArgument", i, err)
			}
			cancel()
			continue
		}
		resp, err := n.client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: id, Csr: csr(t, newKey(t))}}})
		cancel()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := resp.GetResults()[0].GetCode(); got != 0 {
			t.Fatalf("call %d: result code %d, want 0", i, got)
		}
	}
}
