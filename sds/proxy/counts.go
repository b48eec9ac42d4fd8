package proxy

import (
	"context"
	"slices"
	"sync"

	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"

	"github.com/signet-mesh/signet/sds/internal/logkey"
)

// Limits of the counts held between reports.
const (
	// maxSources bounds the (port, source) pairs held; connections from
	// further sources are counted under otherSource.
	maxSources = 4096
	// maxReportedSources bounds the plaintext sources of one report per
	// port, as the agent and CA keep no more.
	maxReportedSources = 32
	otherSource        = "other"
)

// kind is what an inbound connection was.
type kind int

const (
	kindMTLS kind = iota
	kindPlaintext
	kindRefused // refused, or would have been in dry run
	numKinds
)

// Stats are inbound connection counts.
type Stats struct {
	MTLS, Plaintext, Refused int64
}

type sourceKey struct {
	port   uint32
	source string
}

// counter counts inbound connections by port, source and kind: the counts
// since the last report, and totals since the start.
type counter struct {
	mu    sync.Mutex
	cur   map[sourceKey]*[numKinds]int64
	total [numKinds]int64
}

func newCounter() *counter { return &counter{cur: map[sourceKey]*[numKinds]int64{}} }

func (c *counter) add(port uint32, source string, kinds ...kind) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := sourceKey{port: port, source: source}
	n, ok := c.cur[k]
	if !ok {
		if len(c.cur) >= maxSources {
			k.source = otherSource
			n, ok = c.cur[k]
		}
		if !ok {
			n = new([numKinds]int64)
			c.cur[k] = n
		}
	}
	for _, kd := range kinds {
		n[kd]++
		c.total[kd]++
	}
}

func (c *counter) totals() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{MTLS: c.total[kindMTLS], Plaintext: c.total[kindPlaintext], Refused: c.total[kindRefused]}
}

// take returns the counts since the last take and forgets them.
func (c *counter) take() map[sourceKey][numKinds]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[sourceKey][numKinds]int64, len(c.cur))
	for k, n := range c.cur {
		out[k] = *n
	}
	clear(c.cur)
	return out
}

// putBack adds counts that could not be reported to the next report.
func (c *counter) putBack(m map[sourceKey][numKinds]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, add := range m {
		n, ok := c.cur[k]
		if !ok {
			n = new([numKinds]int64)
			c.cur[k] = n
		}
		for i := range add {
			n[i] += add[i]
		}
	}
}

// perPort sums counts by port, with the sources of plaintext connections.
func perPort(spiffeID string, m map[sourceKey][numKinds]int64) []*agentv1.ConnectionCounts {
	byPort := map[uint32]*agentv1.ConnectionCounts{}
	for k, n := range m {
		c, ok := byPort[k.port]
		if !ok {
			c = &agentv1.ConnectionCounts{SpiffeId: spiffeID, Port: k.port}
			byPort[k.port] = c
		}
		c.Mtls += n[kindMTLS]
		c.Plaintext += n[kindPlaintext]
		c.Refused += n[kindRefused]
		if n[kindPlaintext] > 0 && len(c.PlaintextSources) < maxReportedSources {
			c.PlaintextSources = append(c.PlaintextSources, k.source)
		}
	}
	out := make([]*agentv1.ConnectionCounts, 0, len(byPort))
	for _, c := range byPort {
		slices.Sort(c.PlaintextSources)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *agentv1.ConnectionCounts) int { return int(a.Port) - int(b.Port) })
	return out
}

// reportLoop sends the counts to the Reporter every ReportInterval.
func (p *Proxy) reportLoop(ctx context.Context) error {
	t := p.cfg.Clock.NewTicker(p.cfg.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		m := p.counts.take()
		if len(m) == 0 {
			continue
		}
		for k, n := range m {
			p.log.Debug("inbound connections", logkey.Port, k.port, logkey.Source, k.source,
				logkey.MTLS, n[kindMTLS], logkey.Plaintext, n[kindPlaintext], logkey.Refused, n[kindRefused])
		}
		if p.cfg.Reporter == nil {
			continue
		}
		if err := p.cfg.Reporter.Report(ctx, perPort(p.cfg.SPIFFEID.String(), m)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.counts.putBack(m)
			p.log.Warn("reporting connection counts to the agent failed; keeping them for the next report", logkey.Error, err)
		}
	}
}
