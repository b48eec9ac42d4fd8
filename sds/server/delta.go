package server

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"

	envoypb "github.com/signet-mesh/signet/proto/signet/envoy/v1"
	"github.com/signet-mesh/signet/sds/internal/logkey"
)

// deltaStream is the state of one DeltaSecrets stream (see serve for who
// calls it when).
//
// known holds, per subscribed name, what the client has: a resource version,
// or "" once the client has been told the secret does not exist. A new
// snapshot sends each subscribed secret whose version differs from known, and
// lists in removed_resources each unavailable secret the client was not yet
// told about. A name without an entry in known (a new subscription, or one
// subscribed again) is always answered.
type deltaStream struct {
	srv  *Server
	send func(*envoypb.DeltaDiscoveryResponse) error
	log  *slog.Logger

	snap       *Snapshot // latest state from the source; nil until the first
	started    bool      // the first request has been handled
	subscribed map[string]struct{}
	known      map[string]string
	nonce      string // nonce of the latest response
}

func (st *deltaStream) request(req *envoypb.DeltaDiscoveryRequest) error {
	if err := checkTypeURL(req.GetTypeUrl()); err != nil {
		return err
	}
	if st.subscribed == nil {
		st.subscribed = make(map[string]struct{})
		st.known = make(map[string]string)
	}
	// Subscription changes apply whatever the nonce: the protocol says a
	// stale nonce must not make the server drop them.
	if nonce := req.GetResponseNonce(); nonce != "" {
		switch detail := req.GetErrorDetail(); {
		case nonce != st.nonce:
			st.log.Debug("request with stale nonce", logkey.Nonce, nonce)
		case detail != nil:
			st.srv.countNACK(apiDelta)
			st.log.Warn("client rejected secrets", logkey.Nonce, nonce, logkey.Error, detail.GetMessage())
		default:
			st.log.Debug("client acknowledged secrets", logkey.Nonce, nonce)
		}
	}
	for _, name := range req.GetResourceNamesUnsubscribe() {
		delete(st.subscribed, name)
		delete(st.known, name)
	}
	initial := req.GetInitialResourceVersions()
	for _, name := range uniqueNames(req.GetResourceNamesSubscribe()) {
		st.subscribed[name] = struct{}{}
		// A (re)subscribed name is answered even if the server believes the
		// client has it; only a reconnecting client's initial versions are
		// trusted.
		delete(st.known, name)
		if v := initial[name]; !st.started && v != "" {
			st.known[name] = v
		}
	}
	st.started = true
	return nil
}

func (st *deltaStream) update(snap *Snapshot) { st.snap = snap }

// push answers for the subscribed names: secrets whose version differs
// from what the client has go in resources, and secrets that do not exist
// (any more) for this caller, and that the client was not yet told about,
// go in removed_resources. It sends nothing when there is no news.
func (st *deltaStream) push() error {
	if st.snap == nil || len(st.subscribed) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(st.subscribed))
	var (
		changed []resource
		removed []string
	)
	for _, name := range names {
		have, told := st.known[name]
		r, ok := st.srv.build(st.log, st.snap, name)
		switch {
		case ok && (!told || have != r.version):
			changed = append(changed, r)
		case !ok && (!told || have != ""):
			removed = append(removed, name)
			logAbsent(st.log, name)
		}
	}
	if len(changed) == 0 && len(removed) == 0 {
		return nil
	}
	// Record before sending: if Send fails the stream is over anyway.
	resp := &envoypb.DeltaDiscoveryResponse{
		TypeUrl:          SecretTypeURL,
		RemovedResources: removed,
		Nonce:            st.srv.nextNonce(),
	}
	sentNames := make([]string, 0, len(changed))
	for _, r := range changed {
		st.known[r.name] = r.version
		resp.Resources = append(resp.Resources, &envoypb.Resource{Name: r.name, Version: r.version, Resource: r.any})
		sentNames = append(sentNames, r.name)
	}
	for _, name := range removed {
		st.known[name] = ""
	}
	resp.SystemVersionInfo = setVersion(st.known)
	if err := st.send(resp); err != nil {
		return fmt.Errorf("sending secrets: %w", err)
	}
	st.nonce = resp.Nonce
	st.srv.countPush(apiDelta, len(changed))
	st.log.Debug("pushed secrets", logkey.Resources, sentNames, logkey.Removed, removed,
		logkey.Version, resp.SystemVersionInfo, logkey.Nonce, resp.Nonce, logkey.BundleRevision, st.snap.BundleRevision)
	return nil
}
