package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// Backuper is implemented by stores that can write a consistent copy of
// themselves while they serve: Bolt copies one read transaction
// (bbolt's Tx.WriteTo); the etcd store writes the keys of
// signet's prefix at one revision, with its own Backend name. The backup
// holds the store only: the keys it names stay where they are (key files
// under the data dir, or a KMS), encrypted.
type Backuper interface {
	// Backup writes a backup file (WriteBackup's format) to w: h's
	// TrustDomain and CreatedAt as the caller gives them, and the
	// backend, schema version, audit head and revision of the copied
	// state filled in by the store. It returns the header it wrote.
	// Writes keep committing while it runs; the copy is the state of one
	// instant. An error from w stops it; w then holds a partial file that
	// ReadBackup refuses.
	Backup(ctx context.Context, w io.Writer, h BackupHeader) (BackupHeader, error)
}

// BackupFormat is the version of the backup file's framing.
const BackupFormat = 1

// BackendBolt is the Backend of a Bolt backup: its payload is a bbolt
// file.
const BackendBolt = "bolt"

// BackupHeader describes a backup. It is the file's second line, JSON.
type BackupHeader struct {
	// Format is BackupFormat.
	Format int `json:"format"`
	// Backend says what the payload is (BackendBolt) and so which restore
	// reads it.
	Backend string `json:"backend"`
	// SchemaVersion is the store layout of the copy. A signet that knows
	// an older schema refuses the backup; a newer one migrates it on its
	// first start.
	SchemaVersion uint64 `json:"schema_version"`
	// TrustDomain is the CA's trust domain: a server of another trust
	// domain refuses to start on the restored store.
	TrustDomain string `json:"trust_domain"`
	// CreatedAt is when the copy was taken.
	CreatedAt time.Time `json:"created_at"`
	// AuditHeadSeq and AuditHeadHash are the audit log's head in the copy.
	AuditHeadSeq  uint64 `json:"audit_head_seq"`
	AuditHeadHash string `json:"audit_head_hash,omitempty"`
	// Revision is the store's revision counter in the copy.
	Revision int64 `json:"revision"`
}

// The framing: the magic line, the header (JSON) line, the payload, then
// a trailer of the payload's length (8 bytes, big-endian), the SHA-256 of
// everything before the trailer, and the end marker. A file cut anywhere
// lacks a valid trailer.
const (
	backupMagic     = "signet-store-backup\n"
	backupEndMarker = "SIGNETOK"
	backupTrailer   = 8 + sha256.Size + len(backupEndMarker)
	// maxBackupHeader bounds the header line a reader accepts.
	maxBackupHeader = 64 << 10
)

// ErrBadBackup: a file is not a signet backup, is truncated, or does not
// match its checksum. Nothing was restored.
var ErrBadBackup = errors.New("store: not a valid backup")

// WriteBackup writes a backup file to w: h (with Format set), then what
// payload writes, then the trailer. Backends implement Backuper with it.
func WriteBackup(w io.Writer, h BackupHeader, payload func(io.Writer) error) error {
	h.Format = BackupFormat
	line, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("writing backup header: %w", err)
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 1<<16)
	if _, err := io.WriteString(bw, backupMagic); err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	bw.Write(line)
	bw.WriteByte('\n')
	cw := &countWriter{w: bw}
	if err := payload(cw); err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	trailer := binary.BigEndian.AppendUint64(nil, uint64(cw.n))
	trailer = sum.Sum(trailer)
	trailer = append(trailer, backupEndMarker...)
	if _, err := w.Write(trailer); err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ReadBackup reads a backup file from r, copies its payload to dst and
// returns its header. It fails with ErrBadBackup, saying what is wrong,
// when r is not a backup, is cut short or does not match its checksum:
// dst then holds a partial payload the caller must throw away.
func ReadBackup(r io.Reader, dst io.Writer) (BackupHeader, error) {
	var h BackupHeader
	br := bufio.NewReaderSize(r, 1<<16)
	sum := sha256.New()
	magic := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != backupMagic {
		return h, fmt.Errorf("%w: it does not start with %q", ErrBadBackup, backupMagic[:len(backupMagic)-1])
	}
	sum.Write(magic)
	line, err := readLine(br, maxBackupHeader)
	if err != nil {
		return h, fmt.Errorf("%w: reading its header: %v", ErrBadBackup, err)
	}
	sum.Write(line)
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, fmt.Errorf("%w: its header: %v", ErrBadBackup, err)
	}
	if h.Format != BackupFormat {
		return h, fmt.Errorf("%w: backup format %d, this signet reads format %d", ErrBadBackup, h.Format, BackupFormat)
	}
	n, trailer, err := copyHoldingBack(dst, br, sum, backupTrailer)
	if err != nil {
		return h, err
	}
	if len(trailer) < backupTrailer || string(trailer[8+sha256.Size:]) != backupEndMarker {
		return h, fmt.Errorf("%w: the file is truncated (no end marker after %d bytes of payload)", ErrBadBackup, n)
	}
	if want := binary.BigEndian.Uint64(trailer); want != uint64(n) {
		return h, fmt.Errorf("%w: the payload is %d bytes, the trailer says %d", ErrBadBackup, n, want)
	}
	if !bytes.Equal(sum.Sum(nil), trailer[8:8+sha256.Size]) {
		return h, fmt.Errorf("%w: checksum mismatch: the file was altered or damaged", ErrBadBackup)
	}
	return h, nil
}

// ReadBackupHeader reads the header of a backup file from r, without
// checking the payload (ReadBackup does): to see which restore reads it.
func ReadBackupHeader(r io.Reader) (BackupHeader, error) {
	var h BackupHeader
	br := bufio.NewReader(r)
	magic := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != backupMagic {
		return h, fmt.Errorf("%w: it does not start with %q", ErrBadBackup, backupMagic[:len(backupMagic)-1])
	}
	line, err := readLine(br, maxBackupHeader)
	if err != nil {
		return h, fmt.Errorf("%w: reading its header: %v", ErrBadBackup, err)
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, fmt.Errorf("%w: its header: %v", ErrBadBackup, err)
	}
	return h, nil
}

// readLine reads one '\n'-terminated line of at most max bytes, newline
// included.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("longer than %d bytes", max)
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// copyHoldingBack copies r to dst and to sum, except its last hold bytes,
// which it returns (fewer if r is shorter).
func copyHoldingBack(dst io.Writer, r io.Reader, sum hash.Hash, hold int) (int64, []byte, error) {
	buf := make([]byte, 1<<16+hold)
	have := 0 // bytes in buf not yet written
	var n int64
	for {
		m, err := r.Read(buf[have:])
		have += m
		if have > hold {
			out := buf[:have-hold]
			if _, werr := dst.Write(out); werr != nil {
				return n, nil, fmt.Errorf("writing the restored store: %w", werr)
			}
			sum.Write(out)
			n += int64(len(out))
			have = copy(buf, buf[have-hold:have])
		}
		if errors.Is(err, io.EOF) {
			return n, append([]byte(nil), buf[:have]...), nil
		}
		if err != nil {
			return n, nil, fmt.Errorf("reading backup: %w", err)
		}
	}
}
