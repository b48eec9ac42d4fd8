package api

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// Every state change writes its audit record with audit.Append inside the
// change's own transaction, and returns Append's error from it: no change
// without its record, no record without its change (fail closed).

// CheckpointSigner returns the key that signs audit checkpoints and its
// key ID (rotation.Manager.CheckpointSigner).
type CheckpointSigner func(ctx context.Context) (crypto.Signer, string, error)

// recordAudit appends r in tx at now.
func recordAudit(tx store.Tx, r audit.Record, now time.Time) error {
	if _, err := audit.Append(tx, r, now); err != nil {
		return err
	}
	return nil
}

// adminActor names the admin who made the call, as audit records do.
func adminActor(ctx context.Context) string {
	if a, ok := ActorFromContext(ctx); ok {
		return audit.AdminActor(a.UID, a.User)
	}
	return "local" // in-process callers (signet dev)
}

// issuedRecord is the audit record of one issued certificate.
func issuedRecord(actor string, leaf *x509.Certificate, authorityID, entryID string, csr []byte) audit.Record {
	return issuedAudit(actor, svidRecord(leaf, authorityID, actor, entryID), leaf, csr)
}

// issuedAudit is issuedRecord for a certificate whose index record r is
// built already: the serial and SPIFFE ID are formatted once.
func issuedAudit(actor string, r *store.SVIDRecord, leaf *x509.Certificate, csr []byte) audit.Record {
	d := make(map[string]string, 7)
	d[audit.DetailSerial] = r.Serial
	d[audit.DetailNotBefore] = audit.FormatTime(leaf.NotBefore)
	d[audit.DetailNotAfter] = audit.FormatTime(leaf.NotAfter)
	d[audit.DetailAuthorityID] = r.AuthorityID
	// The certificate's SubjectPublicKeyInfo DER is what
	// audit.PublicKeySHA256 would marshal the key to again.
	d[audit.DetailPublicKeySHA256] = audit.SHA256Hex(leaf.RawSubjectPublicKeyInfo)
	if len(csr) > 0 {
		d[audit.DetailCSRSHA256] = audit.SHA256Hex(csr)
	}
	if r.EntryID != "" {
		d[audit.DetailEntryID] = r.EntryID
	}
	return audit.Record{Type: audit.TypeSVIDIssued, Outcome: audit.OutcomeSuccess, Actor: actor, Subject: r.SPIFFEID, Details: d}
}

func entryRecord(typ, actor string, e *store.Entry, method string) audit.Record {
	r := audit.Record{Type: typ, Outcome: audit.OutcomeSuccess, Actor: actor, Subject: e.SPIFFEID, Details: map[string]string{
		audit.DetailEntryID:   e.ID,
		audit.DetailParentID:  e.ParentID,
		audit.DetailSelectors: strings.Join(e.Selectors, ","),
		audit.DetailMethod:    method,
	}}
	if len(e.FederatesWith) > 0 {
		r.Details[audit.DetailFederatesWith] = strings.Join(e.FederatesWith, ",")
	}
	return r
}

// ExportAudit implements adminv1.AdminServiceServer: the records as JSON
// Lines, each in its own message, ending with a fresh signed checkpoint;
// or, with follow, the records as they are written.
func (s *AdminService) ExportAudit(req *adminv1.ExportAuditRequest, stream adminv1.AdminService_ExportAuditServer) error {
	ctx := stream.Context()
	for _, t := range req.GetTypes() {
		if !audit.IsType(t) {
			return status.Errorf(codes.InvalidArgument, "unknown record type %q; the types are %s", t, strings.Join(audit.Types(), ", "))
		}
	}
	f := audit.Filter{Types: req.GetTypes(), SPIFFEID: req.GetSpiffeId()}
	if req.GetSince() != 0 {
		f.Since = time.Unix(0, req.GetSince())
	}
	if req.GetUntil() != 0 {
		f.Until = time.Unix(0, req.GetUntil())
	}
	w := &lineSender{send: func(b []byte) error { return stream.Send(&adminv1.ExportAuditResponse{RecordJson: b}) }}
	if req.GetFollow() {
		aw, err := audit.NewWriter(w, audit.FormatJSONL)
		if err != nil {
			return toStatus(ctx, s.log, "following audit log", err)
		}
		if err := audit.Follow(ctx, s.cfg.Store, 1, aw, f); err != nil && ctx.Err() == nil {
			return toStatus(ctx, s.log, "following audit log", err)
		}
		return nil
	}
	if s.cfg.CheckpointSigner == nil {
		return status.Error(codes.Unimplemented, "audit export is not configured")
	}
	signer, keyID, err := s.cfg.CheckpointSigner(ctx)
	if err != nil {
		return toStatus(ctx, s.log, "loading the checkpoint key", err)
	}
	_, err = audit.Export(ctx, s.cfg.Store, w, audit.ExportParams{
		Format:     audit.FormatJSONL,
		Filter:     f,
		Checkpoint: audit.CheckpointParams{Signer: signer, KeyID: keyID, Actor: adminActor(ctx)},
	}, s.cfg.Clock.Now())
	if err != nil {
		return toStatus(ctx, s.log, "exporting audit log", err)
	}
	return nil
}

// lineSender sends each complete line written to it as one message.
type lineSender struct {
	send func([]byte) error
	buf  []byte
}

func (l *lineSender) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		line := append([]byte(nil), l.buf[:i+1]...)
		l.buf = l.buf[i+1:]
		if err := l.send(line); err != nil {
			return 0, err
		}
	}
}

// PruneAudit implements adminv1.AdminServiceServer.
func (s *AdminService) PruneAudit(ctx context.Context, req *adminv1.PruneAuditRequest) (*adminv1.PruneAuditResponse, error) {
	if req.GetBefore() == 0 {
		return nil, status.Error(codes.InvalidArgument, "before is required")
	}
	if req.GetDryRun() {
		n, err := audit.PrunePreview(ctx, s.cfg.Store, time.Unix(0, req.GetBefore()))
		if errors.Is(err, audit.ErrNotExported) {
			return nil, status.Errorf(codes.FailedPrecondition, "nothing to prune: only records covered by a complete export (signet audit export, no filters) older than --before can be removed")
		}
		if err != nil {
			return nil, toStatus(ctx, s.log, "previewing audit prune", err)
		}
		return &adminv1.PruneAuditResponse{Removed: int64(n), DryRun: true}, nil
	}
	res, err := audit.Prune(ctx, s.cfg.Store, time.Unix(0, req.GetBefore()), adminActor(ctx), s.cfg.Clock.Now())
	if errors.Is(err, audit.ErrNotExported) {
		return nil, status.Errorf(codes.FailedPrecondition, "nothing to prune: only records covered by a complete export (signet audit export, no filters) older than --before can be removed")
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, "pruning audit log", err)
	}
	return &adminv1.PruneAuditResponse{Removed: int64(res.Deleted)}, nil
}
