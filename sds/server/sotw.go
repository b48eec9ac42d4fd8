package server

import (
	"fmt"
	"log/slog"
	"slices"

	envoypb "github.com/signet-mesh/signet/proto/signet/envoy/v1"
	"github.com/signet-mesh/signet/sds/internal/logkey"
)

// sotwStream is the state of one StreamSecrets stream (see serve for who
// calls it when).
//
// The stream remembers, per subscribed name, the version it last sent (sent).
// A new snapshot pushes exactly the subscribed secrets whose current version
// differs from that record, so an unchanged secret is never sent twice and a
// NACKed version is not resent (the record already holds it). A request
// that newly subscribes a name makes it due, as it has no record; an ACK
// makes nothing due. Encodings are memoized per snapshot, so comparing
// versions costs no encoding.
type sotwStream struct {
	srv  *Server
	send func(*envoypb.DiscoveryResponse) error
	log  *slog.Logger

	snap   *Snapshot         // latest state from the source; nil until the first
	names  []string          // subscribed names, sorted, from the latest accepted request
	sent   map[string]string // subscribed name -> version last sent on this stream
	absent map[string]bool   // subscribed names last found unavailable (logged once)
	nonce  string            // nonce of the latest response; "" before the first
	acked  string            // version_info of the latest ACK
}

func (st *sotwStream) request(req *envoypb.DiscoveryRequest) error {
	if err := checkTypeURL(req.GetTypeUrl()); err != nil {
		return err
	}
	nonce := req.GetResponseNonce()
	if nonce != "" && st.nonce != "" {
		if nonce != st.nonce {
			// The client has not seen our latest response yet; the request
			// it will send for that one supersedes this one.
			st.log.Debug("ignoring request with stale nonce", logkey.Nonce, nonce)
			return nil
		}
		if detail := req.GetErrorDetail(); detail != nil {
			st.srv.countNACK(apiStream)
			st.log.Warn("client rejected secrets", logkey.Nonce, nonce, logkey.AckedVersion, st.acked, logkey.Error, detail.GetMessage())
		} else {
			st.acked = req.GetVersionInfo()
			st.log.Debug("client acknowledged secrets", logkey.Nonce, nonce, logkey.Version, st.acked)
		}
	}
	st.subscribe(uniqueNames(req.GetResourceNames()))
	return nil
}

func (st *sotwStream) update(snap *Snapshot) { st.snap = snap }

// subscribe replaces the subscribed names. Records of names no longer
// subscribed are dropped, so subscribing to them again sends them again, as
// the protocol requires for newly requested resources.
func (st *sotwStream) subscribe(names []string) {
	for name := range st.sent {
		if !slices.Contains(names, name) {
			delete(st.sent, name)
		}
	}
	for name := range st.absent {
		if !slices.Contains(names, name) {
			delete(st.absent, name)
		}
	}
	st.names = names
}

// push sends the subscribed secrets that changed since they were last sent
// on this stream, and nothing when none did. Unavailable secrets are left
// out: SotW has no way to say "does not exist" (see doc.go). version_info
// describes everything the client has been sent and still subscribes to.
func (st *sotwStream) push() error {
	if st.snap == nil || len(st.names) == 0 {
		return nil
	}
	var changed []resource
	for _, name := range st.names {
		r, ok := st.srv.build(st.log, st.snap, name)
		if !ok {
			delete(st.sent, name) // if it comes back, send it again
			st.noteAbsent(name)
			continue
		}
		delete(st.absent, name)
		if st.sent[name] != r.version {
			changed = append(changed, r)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	if st.sent == nil {
		st.sent = make(map[string]string, len(st.names))
	}
	// Record before sending: if Send fails the stream is over anyway.
	resp := &envoypb.DiscoveryResponse{TypeUrl: SecretTypeURL, Nonce: st.srv.nextNonce()}
	sentNames := make([]string, 0, len(changed))
	for _, r := range changed {
		st.sent[r.name] = r.version
		resp.Resources = append(resp.Resources, r.any)
		sentNames = append(sentNames, r.name)
	}
	resp.VersionInfo = setVersion(st.sent)
	if err := st.send(resp); err != nil {
		return fmt.Errorf("sending secrets: %w", err)
	}
	st.nonce = resp.Nonce
	st.srv.countPush(apiStream, len(changed))
	st.log.Debug("pushed secrets", logkey.Resources, sentNames, logkey.Version, resp.VersionInfo,
		logkey.Nonce, resp.Nonce, logkey.BundleRevision, st.snap.BundleRevision)
	return nil
}

// noteAbsent logs, once per subscription, that a requested secret is not
// available to the caller.
func (st *sotwStream) noteAbsent(name string) {
	if st.absent[name] {
		return
	}
	if st.absent == nil {
		st.absent = make(map[string]bool)
	}
	st.absent[name] = true
	logAbsent(st.log, name)
}

func logAbsent(log *slog.Logger, name string) {
	if !ValidName(name) {
		log.Info("requested resource is not a secret name", logkey.Resource, name)
		return
	}
	log.Info("requested secret not available to caller", logkey.Resource, name)
}
