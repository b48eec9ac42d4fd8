package agent

import (
	"context"
	"crypto"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/agent/client"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// errNotConnected answers calls made before the agent has an identity and
// a connection to the CA.
var errNotConnected = status.Error(codes.Unavailable, "agent is starting: not connected to the CA yet")

// caConn is the connection to the CA as the agent's tasks see it: each
// task is built in New and declares the calls it makes as a small
// interface, which caConn implements; Run dials the client once the node
// has an identity. Before that, and after Run, every call answers
// Unavailable.
type caConn struct {
	c atomic.Pointer[client.Client]
}

func (cc *caConn) set(c *client.Client) { cc.c.Store(c) }

func (cc *caConn) get() (*client.Client, error) {
	if c := cc.c.Load(); c != nil {
		return c, nil
	}
	return nil, errNotConnected
}

func (cc *caConn) SyncEntries(ctx context.Context) (nodev1.NodeService_SyncEntriesClient, error) {
	c, err := cc.get()
	if err != nil {
		return nil, err
	}
	return c.SyncEntries(ctx)
}

func (cc *caConn) MintX509SVIDs(ctx context.Context, reqs []client.MintRequest) ([]client.MintResult, error) {
	c, err := cc.get()
	if err != nil {
		return nil, err
	}
	return c.MintX509SVIDs(ctx, reqs)
}

func (cc *caConn) MintJWTSVID(ctx context.Context, entryID string, audience []string) (string, error) {
	c, err := cc.get()
	if err != nil {
		return "", err
	}
	return c.MintJWTSVID(ctx, entryID, audience)
}

func (cc *caConn) RenewNodeSVID(ctx context.Context, key crypto.Signer) (*x509svid.SVID, error) {
	c, err := cc.get()
	if err != nil {
		return nil, err
	}
	return c.RenewNodeSVID(ctx, key)
}

func (cc *caConn) ReportConnections(ctx context.Context, bundleRevision int64, counts []*nodev1.ConnectionCounts) error {
	c, err := cc.get()
	if err != nil {
		return err
	}
	return c.ReportConnections(ctx, bundleRevision, counts)
}
