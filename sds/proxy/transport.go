package proxy

import (
	"errors"
	"net"
	"os"
	"sync"
)

// transport is the TCP connection under a tls.Conn.
//
// Reads: crypto/tls reads one record (16 KiB) at a time. While the peer
// sends faster than that, the transport reads ahead into a big pooled
// buffer, so that one system call takes in many records; when the
// transfer slows down it reads straight into the caller's buffer again and
// returns the big one. It first returns the bytes peeked at to detect TLS.
//
// Writes are gathered while batching: the copy loop batches around each
// tls.Conn.Write of a chunk, which the TLS layer cuts into records, so the
// chunk leaves in one system call instead of one per record.
type transport struct {
	net.Conn

	// Read side, used by one reader at a time (crypto/tls's).
	peeked     []byte
	buf        adaptiveBuffer
	rpos, rend int // unread bytes: buf[rpos:rend]
	ahead      bool

	mu       sync.Mutex // held while writing to Conn, so batches keep their order
	batching bool
	wbuf     []byte
}

func newTransport(c net.Conn, peeked []byte) *transport {
	return &transport{Conn: c, peeked: peeked}
}

func (t *transport) Read(p []byte) (int, error) {
	if len(t.peeked) > 0 {
		n := copy(p, t.peeked)
		t.peeked = t.peeked[n:]
		return n, nil
	}
	if t.rpos == t.rend {
		if !t.ahead {
			n, err := t.Conn.Read(p)
			if n == len(p) && n > 0 {
				t.ahead = true // the kernel had at least this much: read ahead
			}
			return n, err
		}
		t.buf.grow()
		m, err := t.Conn.Read(t.buf.bytes())
		t.rpos, t.rend = 0, m
		if m == 0 {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				// A read that ran into a deadline (see gather) says
				// nothing about the transfer; anything else ends it.
				t.ahead = false
				t.buf.release()
			}
			return 0, err
		}
		if m < slowRead {
			t.ahead = false // slowed down: once drained, read straight into p
		}
		// Data and an error together: return the data now; the error comes
		// again from the next read of the connection.
	}
	n := copy(p, t.buf.bytes()[t.rpos:t.rend])
	t.rpos += n
	if t.rpos == t.rend && !t.ahead {
		t.buf.release()
	}
	return n, nil
}

// release returns the read buffer to its pool; the transport must not be
// read again.
func (t *transport) release() {
	t.buf.release()
	t.rpos, t.rend = 0, 0
}

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
	if t.wbuf == nil {
		t.wbuf = (*writeBuffers.Get().(*[]byte))[:0]
	}
	t.mu.Unlock()
}

func (t *transport) flush() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.batching = false
	var err error
	if len(t.wbuf) > 0 {
		_, err = t.Conn.Write(t.wbuf)
	}
	b := t.wbuf[:0]
	writeBuffers.Put(&b)
	t.wbuf = nil
	return err
}

// CloseWrite half-closes the TCP connection.
func (t *transport) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
