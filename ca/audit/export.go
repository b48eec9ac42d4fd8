package audit

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// Format is the encoding of an export.
type Format string

const (
	// FormatJSONL is JSON Lines, one record per line; the zero Format.
	FormatJSONL Format = "jsonl"
	// FormatCSV is CSV with a header row, one record per row.
	FormatCSV Format = "csv"
)

// csvHeader is the first row of a CSV export: the record's fields in
// their canonical order.
var csvHeader = []string{"seq", "time", "type", "outcome", "actor", "subject", "details", "key_id", "signature", "prev_hash", "hash"}

// writeBuffer is the output buffer of a Writer: large enough that writes
// to a file or stream are few, small enough not to matter.
const writeBuffer = 64 << 10

// Writer writes records in an export format. It buffers: call Flush when
// done. It is not safe for concurrent use.
type Writer struct {
	bw  *bufio.Writer
	csv *csv.Writer // nil for JSON Lines
	buf []byte
	row []string
}

// NewWriter returns a Writer of format f to w. A CSV Writer starts with
// the header row.
func NewWriter(w io.Writer, f Format) (*Writer, error) {
	aw := &Writer{bw: bufio.NewWriterSize(w, writeBuffer)}
	switch f {
	case "", FormatJSONL:
	case FormatCSV:
		aw.csv = csv.NewWriter(aw.bw)
		aw.row = make([]string, len(csvHeader))
		if err := aw.csv.Write(csvHeader); err != nil {
			return nil, wrapErr(fmt.Errorf("writing CSV header: %w", err))
		}
	default:
		return nil, wrapErr(fmt.Errorf("unknown export format %q: want %q or %q", f, FormatJSONL, FormatCSV))
	}
	return aw, nil
}

// Write writes r.
func (w *Writer) Write(r *Record) error {
	if w.csv != nil {
		w.buf = csvRow(w.row, w.buf[:0], r)
		if err := w.csv.Write(w.row); err != nil {
			return wrapErr(fmt.Errorf("writing record %d: %w", r.Seq, err))
		}
		return nil
	}
	w.buf = append(appendJSON(w.buf[:0], r), '\n')
	if _, err := w.bw.Write(w.buf); err != nil {
		return wrapErr(fmt.Errorf("writing record %d: %w", r.Seq, err))
	}
	return nil
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error {
	if w.csv != nil {
		w.csv.Flush()
		if err := w.csv.Error(); err != nil {
			return wrapErr(fmt.Errorf("writing export: %w", err))
		}
	}
	if err := w.bw.Flush(); err != nil {
		return wrapErr(fmt.Errorf("writing export: %w", err))
	}
	return nil
}

// csvRow fills row with r's cells. The cells that need formatting are
// built in buf (returned for reuse), which the row's strings then share.
func csvRow(row []string, buf []byte, r *Record) []byte {
	buf = strconv.AppendUint(buf, r.Seq, 10)
	n1 := len(buf)
	buf = r.Time.UTC().AppendFormat(buf, TimeFormat)
	n2 := len(buf)
	if len(r.Details) > 0 {
		buf = appendJSONDetails(buf, r.Details)
	}
	s := string(buf)
	row[0], row[1], row[2], row[3] = s[:n1], s[n1:n2], r.Type, r.Outcome
	row[4], row[5], row[6], row[7] = r.Actor, r.Subject, s[n2:], r.KeyID
	row[8], row[9], row[10] = r.Signature, r.PrevHash, r.Hash
	return buf
}

// appendJSON appends r as one line of a JSON Lines export (without the
// newline): the fields in canonical order, empty optional ones left out,
// details in key order, no spaces. Verify requires exactly this form.
func appendJSON(b []byte, r *Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = r.Time.UTC().AppendFormat(b, TimeFormat)
	b = append(b, `","type":`...)
	b = appendJSONString(b, r.Type)
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, r.Outcome)
	if r.Actor != "" {
		b = append(b, `,"actor":`...)
		b = appendJSONString(b, r.Actor)
	}
	if r.Subject != "" {
		b = append(b, `,"subject":`...)
		b = appendJSONString(b, r.Subject)
	}
	if len(r.Details) > 0 {
		b = append(b, `,"details":`...)
		b = appendJSONDetails(b, r.Details)
	}
	if r.KeyID != "" {
		b = append(b, `,"key_id":`...)
		b = appendJSONString(b, r.KeyID)
	}
	if r.Signature != "" {
		b = append(b, `,"signature":`...)
		b = appendJSONString(b, r.Signature)
	}
	b = append(b, `,"prev_hash":`...)
	b = appendJSONString(b, r.PrevHash)
	b = append(b, `,"hash":`...)
	b = appendJSONString(b, r.Hash)
	return append(b, '}')
}

// appendJSONDetails appends d as a JSON object with its keys in order.
func appendJSONDetails(b []byte, d map[string]string) []byte {
	b = append(b, '{')
	for i, k := range sortedKeys(d) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, d[k])
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, escaping only what JSON
// requires: '"', '\\' and control characters (as \n, \r, \t or \u00XX).
// Everything else, non-ASCII included, is written as is.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Filter selects the records of an export. The zero Filter selects all.
type Filter struct {
	// Since keeps the records at or after it. Zero: no lower bound.
	Since time.Time
	// Until keeps the records before it. Zero: no upper bound.
	Until time.Time
	// Types keeps the records of these types. Empty: every type.
	Types []string
	// SPIFFEID keeps the records whose Subject or Actor is this SPIFFE
	// ID: what happened to a workload or node, and what a node did.
	// Empty: any.
	SPIFFEID string
}

// IsZero reports whether f selects every record.
func (f Filter) IsZero() bool {
	return f.Since.IsZero() && f.Until.IsZero() && len(f.Types) == 0 && f.SPIFFEID == ""
}

// Match reports whether f selects r.
func (f Filter) Match(r *Record) bool {
	switch {
	case !f.Since.IsZero() && r.Time.Before(f.Since):
		return false
	case !f.Until.IsZero() && !r.Time.Before(f.Until):
		return false
	case len(f.Types) > 0 && !slices.Contains(f.Types, r.Type):
		return false
	case f.SPIFFEID != "" && r.Subject != f.SPIFFEID && r.Actor != f.SPIFFEID:
		return false
	}
	return true
}

// details records f in the final checkpoint of an export, which tells a
// verifier that records are left out on purpose.
func (f Filter) details() map[string]string {
	d := map[string]string{}
	if !f.Since.IsZero() {
		d[DetailFilterSince] = FormatTime(f.Since)
	}
	if !f.Until.IsZero() {
		d[DetailFilterUntil] = FormatTime(f.Until)
	}
	if len(f.Types) > 0 {
		d[DetailFilterTypes] = strings.Join(f.Types, ",")
	}
	if f.SPIFFEID != "" {
		d[DetailFilterSPIFFEID] = f.SPIFFEID
	}
	return d
}

// scanChunk is how many records Scan reads per read transaction. It
// bounds what Scan holds in memory (about a megabyte) and how long one
// read lasts: bbolt cannot grow its file while a read is open, so one read
// over a million records could stall the CA's writers.
const scanChunk = 1000

// Scan calls fn for each record with fromSeq <= Seq <= toSeq (fromSeq 0:
// from the oldest, toSeq 0: to the newest), in seq order, reading scanChunk records per View and
// calling fn outside any transaction: fn may block on a slow client. An
// error from fn stops Scan and is returned as is.
//
// Scan reports the records as stored: after a Prune, the first is later
// than fromSeq, and a Prune during the scan leaves a gap. Callers that
// need a contiguous log check for gaps.
func Scan(ctx context.Context, st store.Store, fromSeq, toSeq uint64, fn func(Record) error) error {
	chunk := make([]Record, 0, scanChunk)
	next := fromSeq
	for {
		chunk = chunk[:0]
		err := st.View(ctx, func(tx store.Tx) error {
			err := tx.ForEachAudit(next, func(sr *store.AuditRecord) error {
				if toSeq != 0 && sr.Seq > toSeq {
					return errStop
				}
				chunk = append(chunk, fromStore(sr))
				if len(chunk) == scanChunk {
					return errStop
				}
				return nil
			})
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		})
		if err != nil {
			return wrapErr(fmt.Errorf("reading records from %d: %w", next, err))
		}
		for i := range chunk {
			if err := fn(chunk[i]); err != nil {
				return err
			}
		}
		if len(chunk) < scanChunk {
			return nil
		}
		next = chunk[len(chunk)-1].Seq + 1
		if toSeq != 0 && next > toSeq {
			return nil
		}
	}
}

// ExportParams configures Export.
type ExportParams struct {
	// Format is the encoding. Zero: FormatJSONL.
	Format Format
	// Filter selects the records. The zero Filter exports them all, and
	// only such a complete export lets Prune remove what it covered.
	Filter Filter
	// Checkpoint signs the export's final checkpoint; its Reason is
	// ReasonExport, whatever is set. Actor should name the admin.
	Checkpoint CheckpointParams
}

// ExportResult is what Export wrote.
type ExportResult struct {
	// Records is how many records were written, the final checkpoint
	// included.
	Records int
	// Checkpoint is the final checkpoint.
	Checkpoint Record
}

// metaExported is the store meta key of the exported watermark: the seq
// (8 bytes, big-endian) of the final checkpoint of the newest complete
// export.
const metaExported = "audit_exported_seq"

// Export appends a checkpoint to the log (in its own transaction; its
// details record the filter and Actor), then writes to w the records from
// the oldest up to that checkpoint that p.Filter selects, and the
// checkpoint itself last, whatever the filter. It reads in chunks and
// streams: memory does not grow with the log.
//
// When the filter is zero and every record was written, Export moves the
// exported watermark (Exported) to the checkpoint, which lets Prune
// delete up to it. A write to w that returned no error counts as
// delivered. If the log loses records during the export (a concurrent
// Prune), Export fails rather than write an export that would not verify.
func Export(ctx context.Context, st store.Store, w io.Writer, p ExportParams, now time.Time) (ExportResult, error) {
	aw, err := NewWriter(w, p.Format)
	if err != nil {
		return ExportResult{}, err
	}
	cpp := p.Checkpoint
	cpp.Reason = ReasonExport
	var cp Record
	err = st.Update(ctx, func(tx store.Tx) (err error) {
		cp, err = checkpoint(tx, cpp, p.Filter.details(), now)
		return err
	})
	if err != nil {
		return ExportResult{}, err
	}
	firstSeq, _ := checkpointFirstSeq(&cp)
	res := ExportResult{Checkpoint: cp}
	var prev uint64
	err = Scan(ctx, st, firstSeq, cp.Seq, func(r Record) error {
		if (prev == 0 && r.Seq != firstSeq) || (prev != 0 && r.Seq != prev+1) {
			return missingError(max(prev+1, firstSeq), r.Seq)
		}
		prev = r.Seq
		if r.Seq != cp.Seq && !p.Filter.Match(&r) {
			return nil
		}
		res.Records++
		return aw.Write(&r)
	})
	if err != nil {
		return ExportResult{}, err
	}
	if prev != cp.Seq {
		return ExportResult{}, missingError(max(prev+1, firstSeq), cp.Seq)
	}
	if err := aw.Flush(); err != nil {
		return ExportResult{}, err
	}
	if p.Filter.IsZero() {
		err := st.Update(ctx, func(tx store.Tx) error { return markExported(tx, cp.Seq) })
		if err != nil {
			return res, wrapErr(fmt.Errorf("recording the export: %w", err))
		}
	}
	return res, nil
}

// missingError is the *VerifyError (ErrMissing) of records want up to
// (not including) got missing from the log: deleted behind the CA's back,
// or by a Prune running at the same time.
func missingError(want, got uint64) error {
	what := fmt.Sprintf("record seq %d is", want)
	if got > want+1 {
		what = fmt.Sprintf("records seq %d to %d are", want, got-1)
	}
	return &VerifyError{Seq: want, Missing: want, Err: ErrMissing, Reason: what + " missing from the log (deleted?)"}
}

// Exported returns the seq up to which the log has been exported
// completely (the final checkpoint of the newest unfiltered Export), 0 if
// it never was.
func Exported(tx store.Tx) (uint64, error) {
	v, err := tx.GetMeta(metaExported)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, wrapErr(fmt.Errorf("reading the exported watermark: %w", err))
	}
	if len(v) != 8 {
		return 0, wrapErr(fmt.Errorf("the exported watermark is %d bytes, want 8: %w", len(v), store.ErrCorrupt))
	}
	return binary.BigEndian.Uint64(v), nil
}

// markExported raises the exported watermark to seq; it never lowers it,
// since exports may finish out of order.
func markExported(tx store.Tx, seq uint64) error {
	old, err := Exported(tx)
	if err != nil || old >= seq {
		return err
	}
	return tx.PutMeta(metaExported, binary.BigEndian.AppendUint64(nil, seq))
}

// Follow writes to w the records from fromSeq on (0: from the oldest; a
// Head's Seq + 1: only new ones) that f selects, then each
// record appended after them as it commits, until ctx ends; it flushes w
// whenever it has caught up with the log, so a reader sees each record
// promptly. It returns nil when ctx ends, and an error when writing fails
// or the store closes.
//
// A followed stream has no final checkpoint and does not verify as an
// export: it is for watching the log, Export is for evidence.
func Follow(ctx context.Context, st store.Store, fromSeq uint64, w *Writer, f Filter) error {
	// Subscribe before reading, so that a record committed between the
	// read and the wait still wakes us.
	changed, cancel := st.SubscribeAudit()
	defer cancel()
	next := fromSeq
	for {
		err := Scan(ctx, st, next, 0, func(r Record) error {
			next = r.Seq + 1
			if !f.Match(&r) {
				return nil
			}
			return w.Write(&r)
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changed:
			if !ok {
				return wrapErr(fmt.Errorf("following the log: %w", store.ErrClosed))
			}
		}
	}
}
