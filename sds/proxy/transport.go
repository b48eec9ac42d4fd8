package proxy

import (
	"bufio"
	"net"
	"sync"
)

// transportBufferSize is the read buffer under a TLS connection: one system
// call takes in up to four full records.
const transportBufferSize = 64 << 10

// transport is the TCP connection under a tls.Conn. Its reads go through a
// buffer (which also holds the bytes peeked at to detect TLS), so that a
// system call takes in several records. Its writes are gathered while
// batching: the copy loop batches around each tls.Conn.Write of a chunk,
// which the TLS layer cuts into records of 16 KiB, so the chunk leaves in
// one system call instead of one per record.
type transport struct {
	net.Conn
	r *bufio.Reader

	mu       sync.Mutex // held while writing to Conn, so batches keep their order
	batching bool
	wbuf     []byte
}

func newTransport(c net.Conn, r *bufio.Reader) *transport {
	if r == nil {
		r = bufio.NewReaderSize(c, transportBufferSize)
	}
	return &transport{Conn: c, r: r}
}

func (t *transport) Read(b []byte) (int, error) { return t.r.Read(b) }

func (t *transport) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.batching {
		t.wbuf = append(t.wbuf, b...)
		return len(b), nil
	}
	return t.Conn.Write(b)
}

// batch starts gathering writes; flush sends them and stops. Whatever the
// TLS layer writes meanwhile, from any goroutine, is sent by flush in the
// order it was written.
func (t *transport) batch() {
	t.mu.Lock()
	t.batching = true
	t.mu.Unlock()
}

func (t *transport) flush() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.batching = false
	if len(t.wbuf) == 0 {
		return nil
	}
	_, err := t.Conn.Write(t.wbuf)
	if cap(t.wbuf) > 4*transportBufferSize {
		t.wbuf = nil // a one-off large write: do not keep its buffer
	} else {
		t.wbuf = t.wbuf[:0]
	}
	return err
}

// CloseWrite half-closes the TCP connection.
func (t *transport) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
