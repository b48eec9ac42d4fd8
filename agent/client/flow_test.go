package client_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/test/testserver"
)

// HTTP/2 frame types and flags (RFC 9113).
const (
	h2Preface    = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	h2FrameHdr   = 9
	h2Headers    = 0x1
	h2Ping       = 0x6
	h2FlagAckBit = 0x1
)

// frameCounter counts the HTTP/2 frames on an agent's connection in each
// direction (after TLS: plain HTTP/2).
type frameCounter struct {
	net.Conn
	mu      sync.Mutex
	out, in frames
}

// frames parses one direction's byte stream into frame counts.
type frames struct {
	buf     []byte
	skip    int // bytes still to skip before the first frame (the client preface)
	pings   int // PING frames that are not acknowledgements
	headers int
}

func (f *frames) add(p []byte) {
	f.buf = append(f.buf, p...)
	if f.skip > 0 {
		n := min(f.skip, len(f.buf))
		f.buf, f.skip = f.buf[n:], f.skip-n
	}
	for len(f.buf) >= h2FrameHdr {
		n := int(f.buf[0])<<16 | int(binary.BigEndian.Uint16(f.buf[1:3]))
		if len(f.buf) < h2FrameHdr+n {
			return
		}
		switch typ, flags := f.buf[3], f.buf[4]; {
		case typ == h2Ping && flags&h2FlagAckBit == 0:
			f.pings++
		case typ == h2Headers:
			f.headers++
		}
		f.buf = f.buf[h2FrameHdr+n:]
	}
}

func newFrameCounter(conn net.Conn) *frameCounter {
	return &frameCounter{Conn: conn, out: frames{skip: len(h2Preface)}}
}

func (c *frameCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out.add(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *frameCounter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in.add(p[:n])
	c.mu.Unlock()
	return n, err
}

// counts returns the PING (not acknowledgement) and HEADERS frames the
// agent wrote and read.
func (c *frameCounter) counts() (out, in frames) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out, c.in
}

// dialWatched dials s as node n with each connection wrapped by wrap. It
// returns the client, closed when the test ends, and a function that
// returns the one connection it made (the test fails on none or more).
func dialWatched[C net.Conn](t *testing.T, s *testserver.Server, n *attested, wrap func(net.Conn) C) (*client.Client, func() C) {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []C
	)
	c, err := client.DialWrapped(s.Addr, td, n.src, func(conn net.Conn) net.Conn {
		w := wrap(conn)
		mu.Lock()
		conns = append(conns, w)
		mu.Unlock()
		return w
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, func() C {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if len(conns) != 1 {
			t.Fatalf("%d connections, want 1", len(conns))
		}
		return conns[0]
	}
}

// TestNoPingOnData: neither side of an agent's connection answers data
// with a PING of its own (gRPC's bandwidth estimator is off on both), so
// a bundle change that wakes the whole fleet's streams at once costs one
// message per agent, not a message and a PING round trip each, and the
// fleet's status reports that follow cost the CA no PING each either.
func TestNoPingOnData(t *testing.T) {
	s := testserver.Start(t)
	n := attest(t, s, "pingless")
	c, conn := dialWatched(t, s, n, newFrameCounter)
	stream, err := c.SyncEntries(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first sync message: %v", err)
	}
	// The agent queues a PING, if any, when the data arrives; a call made
	// after it writes its HEADERS after that PING. Likewise the CA queues
	// one, if any, when the call's data arrives, before its response.
	if err := c.ReportStatus(ctx(t), 1); err != nil {
		t.Fatalf("ReportStatus: %v", err)
	}
	out, in := conn().counts()
	if out.headers < 2 || in.headers < 2 {
		t.Fatalf("saw %d HEADERS frames from the agent and %d from the CA, want the two calls' (the frame count is broken)", out.headers, in.headers)
	}
	if out.pings != 0 {
		t.Errorf("the agent wrote %d PING frames after receiving data, want 0", out.pings)
	}
	if in.pings != 0 {
		t.Errorf("the CA sent %d PING frames after receiving data, want 0", in.pings)
	}
}

// writeSizes records the largest single write an agent's gRPC makes on
// its connection, and how much it wrote in all (after TLS: each write is
// sent in TLS records no larger than itself).
type writeSizes struct {
	net.Conn
	mu         sync.Mutex
	max, total int
}

func (c *writeSizes) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.max, c.total = max(c.max, len(p)), c.total+len(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestWritesUnderRecordCap: a request larger than a TLS record (a mint
// batch of a hundred CSRs) reaches the CA whole, written in pieces of at
// most client.WriteBufferSize: the CA keeps, for the life of each
// agent's connection, a read buffer the size of the largest record the
// agent sent it.
func TestWritesUnderRecordCap(t *testing.T) {
	s := testserver.Start(t)
	n := attest(t, s, "smallrecords")
	c, conn := dialWatched(t, s, n, func(conn net.Conn) *writeSizes { return &writeSizes{Conn: conn} })
	reqs := make([]client.MintRequest, 100)
	for i := range reqs {
		reqs[i] = client.MintRequest{EntryID: fmt.Sprintf("no-such-entry-%03d", i), Key: newKey(t)}
	}
	res, err := c.MintX509SVIDs(ctx(t), reqs)
	if err != nil {
		t.Fatalf("MintX509SVIDs: %v", err)
	}
	if len(res) != len(reqs) {
		t.Fatalf("%d results for %d requests", len(res), len(reqs))
	}
	w := conn()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.total < 16<<10 {
		t.Fatalf("the agent wrote %d bytes, want more than a 16 KiB TLS record (the request is too small to test)", w.total)
	}
	if w.max > client.WriteBufferSize {
		t.Errorf("the agent wrote %d bytes at once, want at most %d", w.max, client.WriteBufferSize)
	}
}
