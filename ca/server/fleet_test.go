package server

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

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
