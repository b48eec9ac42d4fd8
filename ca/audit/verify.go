package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// maxLineBytes bounds one line of a JSON Lines export, so that a verifier
// fed garbage needs bounded memory. A record's canonical encoding is at
// most maxRecordBytes; JSON escaping of control characters can grow it
// six times.
const maxLineBytes = 8 * maxRecordBytes

// Report is what Verify or VerifyStore checked.
type Report struct {
	// Records is how many records were checked.
	Records int
	// FirstSeq and LastSeq are the seqs of the first and last records.
	FirstSeq, LastSeq uint64
	// Checkpoints is how many checkpoint signatures verified.
	Checkpoints int
	// UnverifiedCheckpoints is how many checkpoints are signed by keys
	// the verifier does not know (keys since rotated out of the bundle).
	// The chain still links them; the final checkpoint of an export is
	// never one of them.
	UnverifiedCheckpoints int
	// Filtered: the export was filtered, so records are missing on
	// purpose and only the records that follow each other are linked.
	Filtered bool
	// Pruned: the log starts after seq 1; the records before were pruned.
	Pruned bool
	// Final is the export's final checkpoint (zero for VerifyStore).
	Final Record
}

// Verify checks an export read from r, JSON Lines or CSV (told apart by
// the first byte): every record's hash, the link of each record to the one
// before it, the checkpoint signatures, and that the export ends with a
// checkpoint signed by a key of keys. It reads r once, holding one record
// at a time.
//
// It returns a *VerifyError for the first bad record (by line), and the
// report of what it checked before it; another error is a read error. The
// package documentation says what each format and filtered or pruned
// exports let Verify detect.
func Verify(r io.Reader, keys Keys) (Report, error) {
	br := bufio.NewReaderSize(r, maxLineBytes)
	b, err := br.Peek(1)
	if errors.Is(err, io.EOF) {
		return Report{}, &VerifyError{Err: ErrTruncated, Reason: "the export is empty: truncated?"}
	}
	if err != nil {
		return Report{}, wrapErr(fmt.Errorf("reading export: %w", err))
	}
	var src source
	if b[0] == '{' {
		src = &jsonlSource{br: br}
	} else {
		src, err = newCSVSource(br)
		if err != nil {
			return Report{}, err
		}
	}

	v := &verifier{keys: keys}
	var fatal *VerifyError
read:
	for fatal == nil {
		rec, line, err := src.next()
		switch {
		case errors.Is(err, io.EOF):
			break read
		case errors.As(err, &fatal): // a malformed line
		case err != nil:
			return v.rep, err
		default:
			fatal = v.add(&rec, line)
		}
	}
	var final *Record
	if fatal == nil {
		if v.lastSigned {
			final = &v.prev
		}
	} else {
		// Whether the records missing before the fatal error are an
		// error depends on the final checkpoint: read on to it.
		last, ok, err := lastRecord(src)
		if err != nil {
			return v.rep, err
		}
		if ok && v.trusted(&last) {
			final = &last
		}
	}
	return v.finish(final, fatal)
}

// VerifyStore checks the live log the way Verify checks an export, except
// that nothing may be missing, the log may end with any record, and it
// must reach the store's audit head (else records were deleted from its
// end). Like Export, it reads in chunks and holds little memory.
func VerifyStore(ctx context.Context, st store.Store, keys Keys) (Report, error) {
	return verifyFrom(ctx, st, keys, 0)
}

// VerifyTail checks the live log from its newest checkpoint to its head,
// as VerifyStore does the whole log: what a server checks on every start,
// at a cost that does not grow with the log. Without a recorded
// checkpoint it starts at the exported watermark, or else at the oldest
// record. A checkpoint that is itself missing is reported as missing.
func VerifyTail(ctx context.Context, st store.Store, keys Keys) (Report, error) {
	var from uint64
	err := st.View(ctx, func(tx store.Tx) (err error) {
		if from, err = LastCheckpoint(tx); err != nil || from != 0 {
			return err
		}
		from, err = Exported(tx)
		return err
	})
	if err != nil {
		return Report{}, err
	}
	return verifyFrom(ctx, st, keys, from)
}

// verifyFrom checks the live log from record from (0: the oldest), which
// must be there, to the head.
func verifyFrom(ctx context.Context, st store.Store, keys Keys, from uint64) (Report, error) {
	var (
		headSeq  uint64
		headHash string
	)
	err := st.View(ctx, func(tx store.Tx) (err error) {
		headSeq, headHash, err = tx.AuditHead()
		return err
	})
	if err != nil {
		return Report{}, wrapErr(fmt.Errorf("reading the head: %w", err))
	}
	if headSeq == 0 {
		return Report{}, nil
	}
	v := &verifier{keys: keys, live: true}
	var fatal *VerifyError
	err = Scan(ctx, st, from, headSeq, func(r Record) error {
		if from != 0 && v.rep.Records == 0 && r.Seq != from {
			fatal = missingError(from, r.Seq).(*VerifyError)
			return fatal
		}
		if fatal = v.add(&r, 0); fatal != nil {
			return fatal
		}
		return nil
	})
	if fatal != nil {
		return v.rep, fatal
	}
	if err != nil {
		return v.rep, err
	}
	switch {
	case v.rep.Records == 0 && from != 0:
		return v.rep, missingError(from, headSeq+1)
	case v.rep.Records == 0 || v.prev.Seq < headSeq:
		return v.rep, missingError(v.prev.Seq+1, headSeq+1)
	case v.prev.Hash != headHash:
		return v.rep, &VerifyError{Seq: v.prev.Seq, Err: ErrBrokenChain, Reason: fmt.Sprintf(
			"the log ends here, but its head, record seq %d, has hash %s: the record was replaced", headSeq, headHash)}
	}
	return v.rep, nil
}

// verifier checks records one at a time, keeping only what the next
// record is checked against. Verify and VerifyStore share it.
type verifier struct {
	keys Keys
	// live: a store, not an export. Nothing may be missing, and the
	// first record must be seq 1 or a checkpoint (a pruned log's anchor).
	live bool

	rep       Report
	prev      Record // the last record checked
	prevLine  int
	firstLine int
	// firstType is the first record's type.
	firstType string
	// lastSigned: prev is a checkpoint whose signature verified.
	lastSigned bool
	// gap is the first place records are missing: an error unless the
	// export turns out to be filtered.
	gap *VerifyError
}

// add checks r, read at line, against the records before it. It returns
// an error that fails the input whatever comes after.
func (v *verifier) add(r *Record, line int) *VerifyError {
	fail := func(err error, format string, args ...any) *VerifyError {
		return &VerifyError{Line: line, Seq: r.Seq, Err: err, Reason: fmt.Sprintf(format, args...)}
	}
	if ComputeHash(r) != r.Hash {
		return fail(ErrHashMismatch, "hash mismatch: its fields do not hash to its hash (edited?)")
	}
	switch {
	case v.rep.Records == 0:
		v.firstLine, v.firstType = line, r.Type
		v.rep.FirstSeq = r.Seq
		v.rep.Pruned = r.Seq > 1
		if r.Seq == 1 && r.PrevHash != GenesisHash {
			return fail(ErrBrokenChain, "broken chain: the first record's prev_hash is not the genesis value")
		}
		if v.live && r.Seq > 1 && r.Type != TypeCheckpoint {
			return fail(ErrMissing, "the log starts at seq %d with a %s record, not at seq 1 nor at a checkpoint: records are missing at the start (deleted?)", r.Seq, r.Type)
		}
	case r.Seq <= v.prev.Seq:
		return fail(ErrOrder, "seq %d follows seq %d%s: records are out of order (moved or duplicated?)", r.Seq, v.prev.Seq, v.at(v.prevLine))
	case r.Seq == v.prev.Seq+1:
		if r.PrevHash != v.prev.Hash {
			return fail(ErrBrokenChain, "broken chain: its prev_hash is not the hash of record seq %d%s: a record was edited, inserted or replaced", v.prev.Seq, v.at(v.prevLine))
		}
	default:
		missing := fmt.Sprintf("record seq %d is", v.prev.Seq+1)
		if r.Seq > v.prev.Seq+2 {
			missing = fmt.Sprintf("records seq %d to %d are", v.prev.Seq+1, r.Seq-1)
		}
		gap := fail(ErrMissing, "seq %d follows seq %d%s: %s missing (deleted or moved?)", r.Seq, v.prev.Seq, v.at(v.prevLine), missing)
		gap.Missing = v.prev.Seq + 1
		if v.live {
			return gap
		}
		if v.gap == nil {
			v.gap = gap
		}
	}
	v.lastSigned = false
	if r.Type == TypeCheckpoint {
		pub, ok := v.keys(r.KeyID)
		if !ok {
			v.rep.UnverifiedCheckpoints++
		} else if err := VerifyCheckpoint(*r, pub); err != nil {
			return fail(ErrSignature, "%s", strings.TrimPrefix(err.Error(), "audit: "))
		} else {
			v.rep.Checkpoints++
			v.lastSigned = true
		}
	}
	v.prev, v.prevLine = *r, line
	v.rep.Records++
	v.rep.LastSeq = r.Seq
	return nil
}

// at names a line in a reason, if there are lines.
func (v *verifier) at(line int) string {
	if line == 0 {
		return ""
	}
	return fmt.Sprintf(" (line %d)", line)
}

// trusted reports whether r is a checkpoint whose hash and signature
// verify with a known key, so its details can be believed.
func (v *verifier) trusted(r *Record) bool {
	if r.Type != TypeCheckpoint || ComputeHash(r) != r.Hash {
		return false
	}
	pub, ok := v.keys(r.KeyID)
	return ok && VerifyCheckpoint(*r, pub) == nil
}

// finish decides an export's verdict once the input has been read. final
// is its last record if that is a trusted checkpoint. The errors are
// weighed in line order: missing records at the start, then the first
// gap (both errors only if final does not say the export was filtered),
// then fatal, then the export's end.
func (v *verifier) finish(final *Record, fatal *VerifyError) (Report, error) {
	if final != nil {
		v.rep.Final = *final
		v.rep.Filtered = checkpointFilter(final)
		// A filtered export may start late; the log's start is signed.
		if first, ok := checkpointFirstSeq(final); ok {
			v.rep.Pruned = first > 1
		}
	}
	if !v.rep.Filtered {
		if err := v.checkStart(final); err != nil {
			return v.rep, err
		}
		if v.gap != nil {
			return v.rep, v.gap
		}
	}
	if fatal != nil {
		return v.rep, fatal
	}
	switch {
	case v.rep.Records == 0:
		return v.rep, &VerifyError{Err: ErrTruncated, Reason: "the export holds no records: truncated?"}
	case v.prev.Type != TypeCheckpoint:
		return v.rep, &VerifyError{Line: v.prevLine, Seq: v.prev.Seq, Err: ErrTruncated, Reason: fmt.Sprintf(
			"the export ends with this %s record, not with a signed checkpoint: truncated?", v.prev.Type)}
	case final == nil:
		return v.rep, &VerifyError{Line: v.prevLine, Seq: v.prev.Seq, Err: ErrUnknownKey, Reason: fmt.Sprintf(
			"the final checkpoint is signed by key %q, which the verifier was not given", v.prev.KeyID)}
	}
	return v.rep, nil
}

// checkStart checks that an unfiltered export starts where the log did
// when it was exported: the final checkpoint's first_seq, or without a
// trusted final checkpoint, seq 1 or a checkpoint.
func (v *verifier) checkStart(final *Record) *VerifyError {
	if v.rep.Records == 0 {
		return nil
	}
	fail := func(format string, args ...any) *VerifyError {
		return &VerifyError{Line: v.firstLine, Seq: v.rep.FirstSeq, Err: ErrMissing, Reason: fmt.Sprintf(format, args...)}
	}
	if final != nil {
		if want, ok := checkpointFirstSeq(final); ok && want != v.rep.FirstSeq {
			return fail("the export starts at seq %d, but the log started at seq %d when it was exported: records are missing at the start (deleted?)", v.rep.FirstSeq, want)
		}
		return nil
	}
	if v.rep.FirstSeq > 1 && v.firstType != TypeCheckpoint {
		return fail("the export starts at seq %d with a %s record, not at seq 1 nor at a checkpoint: records are missing at the start (deleted?)", v.rep.FirstSeq, v.firstType)
	}
	return nil
}

// source yields the records of an export. next returns io.EOF at the end,
// a *VerifyError (ErrMalformed) for a line that is not a record in the
// export form, and any other error for a failed read.
type source interface {
	next() (r Record, line int, err error)
}

// lastRecord reads src to its end and returns its last record, if that
// one is well formed.
func lastRecord(src source) (last Record, ok bool, err error) {
	for {
		r, _, err := src.next()
		var ve *VerifyError
		switch {
		case errors.Is(err, io.EOF):
			return last, ok, nil
		case errors.As(err, &ve):
			ok = false
		case err != nil:
			return Record{}, false, err
		default:
			last, ok = r, true
		}
	}
}

// jsonlSource reads JSON Lines.
type jsonlSource struct {
	br   *bufio.Reader
	line int
}

func (s *jsonlSource) next() (Record, int, error) {
	data, err := s.br.ReadSlice('\n')
	if len(data) == 0 && errors.Is(err, io.EOF) {
		return Record{}, 0, io.EOF
	}
	s.line++
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = s.br.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return Record{}, 0, wrapErr(fmt.Errorf("reading export: %w", err))
		}
		return Record{}, s.line, &VerifyError{Line: s.line, Err: ErrMalformed, Reason: fmt.Sprintf("malformed record: the line is longer than %d bytes", maxLineBytes)}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return Record{}, 0, wrapErr(fmt.Errorf("reading export: %w", err))
	}
	r, err := ParseLine(bytes.TrimSuffix(data, []byte{'\n'}))
	if err != nil {
		return r, s.line, &VerifyError{Line: s.line, Seq: r.Seq, Err: ErrMalformed, Reason: err.Error()}
	}
	return r, s.line, nil
}

// jsonRecord is the shape of a JSON Lines record, before its fields are
// checked.
type jsonRecord struct {
	Seq       uint64            `json:"seq"`
	Time      string            `json:"time"`
	Type      string            `json:"type"`
	Outcome   string            `json:"outcome"`
	Actor     string            `json:"actor"`
	Subject   string            `json:"subject"`
	Details   map[string]string `json:"details"`
	KeyID     string            `json:"key_id"`
	Signature string            `json:"signature"`
	PrevHash  string            `json:"prev_hash"`
	Hash      string            `json:"hash"`
}

// ParseLine parses one line of a JSON Lines export (without its newline).
// The line must be exactly as Export writes it: an extra, repeated or
// reordered field, other spacing or escaping, fail with an error even
// when the record's hash would verify, so that what a reader of the file
// sees is what was verified. When the line is JSON but not in that form,
// the returned record holds what it could parse (its Seq names it).
func ParseLine(line []byte) (Record, error) {
	var j jsonRecord
	if err := json.Unmarshal(line, &j); err != nil {
		return Record{}, fmt.Errorf("malformed record: not a JSON record: %v", err)
	}
	r := Record{
		Seq:       j.Seq,
		Type:      j.Type,
		Outcome:   j.Outcome,
		Actor:     j.Actor,
		Subject:   j.Subject,
		Details:   j.Details,
		KeyID:     j.KeyID,
		Signature: j.Signature,
		PrevHash:  j.PrevHash,
		Hash:      j.Hash,
	}
	if err := parseFields(&r, j.Time); err != nil {
		return r, err
	}
	if len(r.Details) == 0 {
		r.Details = nil
	}
	if !bytes.Equal(appendJSON(nil, &r), line) {
		return r, errors.New("malformed record: the line is not in the export form (reformatted, or a field added, repeated or reordered?)")
	}
	return r, nil
}

// parseFields parses r's time and checks the fields every record has.
func parseFields(r *Record, ts string) error {
	if r.Seq == 0 {
		return errors.New("malformed record: no seq")
	}
	t, err := time.Parse(TimeFormat, ts)
	if err != nil || FormatTime(t) != ts {
		return fmt.Errorf("malformed record: time %q is not in the form %s", ts, TimeFormat)
	}
	r.Time = t.UTC()
	for _, h := range []struct{ name, v string }{{"prev_hash", r.PrevHash}, {"hash", r.Hash}} {
		if !isHexHash(h.v) {
			return fmt.Errorf("malformed record: %s %q is not 64 lower-case hex digits", h.name, h.v)
		}
	}
	return nil
}

func isHexHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// csvSource reads a CSV export.
type csvSource struct {
	cr *csv.Reader
}

func newCSVSource(r io.Reader) (*csvSource, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(csvHeader)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil || !slices.Equal(header, csvHeader) {
		return nil, &VerifyError{Line: 1, Err: ErrMalformed, Reason: "malformed export: neither JSON Lines nor CSV with the header " + fmt.Sprint(csvHeader)}
	}
	return &csvSource{cr: cr}, nil
}

func (s *csvSource) next() (Record, int, error) {
	row, err := s.cr.Read()
	if errors.Is(err, io.EOF) {
		return Record{}, 0, io.EOF
	}
	if pe := (*csv.ParseError)(nil); errors.As(err, &pe) {
		return Record{}, pe.StartLine, &VerifyError{Line: pe.StartLine, Err: ErrMalformed, Reason: "malformed record: " + pe.Err.Error()}
	}
	if err != nil {
		return Record{}, 0, wrapErr(fmt.Errorf("reading export: %w", err))
	}
	line, _ := s.cr.FieldPos(0)
	r, err := parseCSVRow(row)
	if err != nil {
		return r, line, &VerifyError{Line: line, Seq: r.Seq, Err: ErrMalformed, Reason: err.Error()}
	}
	return r, line, nil
}

// parseCSVRow parses a row of a CSV export, whose cells must be exactly as
// Export writes them.
func parseCSVRow(row []string) (Record, error) {
	seq, err := strconv.ParseUint(row[0], 10, 64)
	if err != nil || strconv.FormatUint(seq, 10) != row[0] {
		return Record{}, fmt.Errorf("malformed record: seq %q is not a decimal number", row[0])
	}
	r := Record{
		Seq:       seq,
		Type:      row[2],
		Outcome:   row[3],
		Actor:     row[4],
		Subject:   row[5],
		KeyID:     row[7],
		Signature: row[8],
		PrevHash:  row[9],
		Hash:      row[10],
	}
	if err := parseFields(&r, row[1]); err != nil {
		return r, err
	}
	if row[6] != "" {
		if err := json.Unmarshal([]byte(row[6]), &r.Details); err != nil || len(r.Details) == 0 ||
			string(appendJSONDetails(nil, r.Details)) != row[6] {
			return r, errors.New("malformed record: details are not a JSON object of strings in the export form")
		}
	}
	return r, nil
}
