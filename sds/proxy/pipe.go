package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// end is one side of a spliced connection: the connection, and the
// transport under it when it is TLS (to batch its writes).
type end struct {
	conn net.Conn
	tr   *transport
}

func plainEnd(c net.Conn) end { return end{conn: c} }

func tlsEnd(c *tls.Conn, tr *transport) end { return end{conn: c, tr: tr} }

// pipe copies a to b and b to a until both directions have ended, then
// closes both. A direction that reaches EOF half-closes its destination
// (TCP FIN, or TLS close_notify) and the other direction goes on; one that
// fails closes both.
func pipe(a, b end) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(b, a)
	}()
	copyHalf(a, b)
	<-done
	a.conn.Close()
	b.conn.Close()
	for _, e := range []end{a, b} {
		if e.tr != nil {
			e.tr.release()
		}
	}
}

func copyHalf(dst, src end) {
	dc, dok := dst.conn.(*net.TCPConn)
	sc, sok := src.conn.(*net.TCPConn)
	if dok && sok {
		// Plaintext both sides: let the kernel splice.
		_, err := io.Copy(dc, sc)
		finish(dst.conn, src.conn, err)
		return
	}
	var buf adaptiveBuffer
	err := copyLoop(dst, src, &buf)
	buf.release()
	finish(dst.conn, src.conn, err)
}

// maxRecordPayload is the most a TLS record carries; a buffer with less
// room left is not worth another read.
const maxRecordPayload = 16 << 10

// copyLoop is io.CopyBuffer with an adaptive buffer (see buffers.go), TLS
// writes batched (see transport) and TLS reads gathered: a TLS read
// returns one record (16 KiB at most), so after one the loop takes the
// records already received too, and writes them in one system call.
func copyLoop(dst, src end, ab *adaptiveBuffer) error {
	for {
		buf := ab.bytes()
		n, rerr := src.conn.Read(buf)
		if rerr == nil && src.tr != nil && n > 0 {
			n, rerr = gather(src.conn, buf, n)
		}
		if n > 0 {
			if dst.tr != nil {
				dst.tr.batch()
			}
			_, werr := dst.conn.Write(buf[:n])
			if dst.tr != nil {
				if ferr := dst.tr.flush(); werr == nil {
					werr = ferr
				}
			}
			if werr != nil {
				return werr
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		ab.adapt(n)
	}
}

// gather reads more into buf[n:] from a TLS connection without waiting:
// with a read deadline in the past, a read returns only what is already
// received (in the transport's buffer), and a timeout leaves the TLS
// connection usable (crypto/tls keeps a partly read record for the next
// read). It returns the new length, and an error other than the timeout.
func gather(c net.Conn, buf []byte, n int) (int, error) {
	if len(buf)-n < maxRecordPayload {
		return n, nil
	}
	c.SetReadDeadline(time.Unix(1, 0))
	defer c.SetReadDeadline(time.Time{})
	for len(buf)-n >= maxRecordPayload {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

// finish ends one direction: after an error both connections close; at
// EOF the destination is half-closed (or closed, if it cannot be).
func finish(dst, src net.Conn, err error) {
	if err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
}
