// Package policy keeps the mTLS policy set that the CA sends with the entry
// sync, for the agent's proxies: agent/proxyapi serves each proxy the
// effective mode of its workload from it (WatchPolicy), and follows its
// changes.
//
//	set := policy.NewSet(logger)
//	set.Apply(msg.GetMtlsPolicies())          // agent/sync, on each message that has one
//	ps, known, changed := set.MTLSPolicies()  // agent/proxyapi
//	<-changed                                 // closed at the next Apply
//
// Until the first Apply nothing is known, not even the default: a proxy
// then waits instead of enforcing a mode the CA never chose.
package policy

import (
	"log/slog"
	"slices"
	"sync"

	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/internal/mtlspolicy"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// Set is the latest mTLS policy set from the CA. It is safe for concurrent
// use.
type Set struct {
	log *slog.Logger

	mu       sync.Mutex
	policies []mtlspolicy.Policy
	known    bool          // a policy set was received
	changed  chan struct{} // closed, and replaced, on every change
}

// NewSet returns an empty Set; a nil logger discards.
func NewSet(log *slog.Logger) *Set {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Set{log: log.With(logkey.Component, "policy"), changed: make(chan struct{})}
}

// MTLSPolicies returns the trust domain's mTLS policy set as last received
// from the CA, whether one was received yet, and a channel closed at the
// next change. The slice is shared and must not be modified.
func (s *Set) MTLSPolicies() (policies []mtlspolicy.Policy, known bool, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policies, s.known, s.changed
}

// Apply replaces the set with the one of a sync message. A policy with a
// mode this agent does not know is left out (and logged).
func (s *Set) Apply(in *nodev1.MTLSPolicies) {
	ps := make([]mtlspolicy.Policy, 0, len(in.GetPolicies()))
	for _, p := range in.GetPolicies() {
		mode, err := mtlspolicy.ParseMode(p.GetMode())
		if err != nil {
			s.log.Error("ignoring mtls policy with an unknown mode", logkey.PolicyID, p.GetId(), logkey.Error, err)
			continue
		}
		ps = append(ps, mtlspolicy.Policy{
			ID: p.GetId(), SPIFFEID: p.GetSpiffeId(), Prefix: p.GetPrefix(), Port: p.GetPort(),
			Mode: mode, ExemptPorts: slices.Clone(p.GetExemptPorts()), DryRun: p.GetDryRun(),
		})
	}
	s.mu.Lock()
	s.policies, s.known = ps, true
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.log.Info("mtls policies applied", logkey.Policies, len(ps))
}
