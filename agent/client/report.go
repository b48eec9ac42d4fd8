package client

import (
	"context"
	"fmt"

	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// ReportConnections tells the CA which bundle revision the agent serves and
// the inbound connection counts of its proxies since the last report.
func (c *Client) ReportConnections(ctx context.Context, bundleRevision int64, counts []*nodev1.ConnectionCounts) error {
	ctx, cancel := withCallTimeout(ctx)
	defer cancel()
	req := &nodev1.ReportStatusRequest{AppliedBundleRevision: bundleRevision, Connections: counts}
	if _, err := c.node.ReportStatus(ctx, req); err != nil {
		return fmt.Errorf("client: reporting connection counts: %w", err)
	}
	return nil
}
