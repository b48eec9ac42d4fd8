package peercred

import (
	"net"
	"sync"
)

// LimitConns wraps ln, a Unix socket listener, so that one local user
// (peer uid) holds at most perUID connections at once: a connection past
// that is closed as soon as it is accepted, and refused, if not nil, is
// told whose it was (from Accept's goroutine; it must not block). Other
// uids are not affected, so one user cannot exhaust the server's file
// descriptors for everyone. A uid's count drops when its connections
// close. Connections whose credentials cannot be read pass through
// uncounted (TransportCredentials then refuses them).
//
// The connections it returns keep working with TransportCredentials.
func LimitConns(ln net.Listener, perUID int, refused func(Creds)) net.Listener {
	return &limitListener{Listener: ln, perUID: perUID, refused: refused, open: map[uint32]int{}}
}

type limitListener struct {
	net.Listener
	perUID  int
	refused func(Creds)

	mu   sync.Mutex
	open map[uint32]int // connections held, by uid
}

// Accept returns the next connection within its uid's limit.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uc, ok := conn.(*net.UnixConn)
		if !ok {
			return conn, nil
		}
		c, err := Read(uc)
		if err != nil {
			return conn, nil
		}
		if !l.acquire(c.UID) {
			conn.Close()
			if l.refused != nil {
				l.refused(c)
			}
			continue
		}
		return &limitedConn{UnixConn: uc, release: func() { l.release(c.UID) }}, nil
	}
}

func (l *limitListener) acquire(uid uint32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[uid] >= l.perUID {
		return false
	}
	l.open[uid]++
	return true
}

func (l *limitListener) release(uid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[uid]--; l.open[uid] <= 0 {
		delete(l.open, uid)
	}
}

// limitedConn is a counted connection: closing it gives its uid's slot
// back, once. Embedding *net.UnixConn keeps SyscallConn and the rest
// visible to gRPC.
type limitedConn struct {
	*net.UnixConn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.UnixConn.Close()
	c.once.Do(c.release)
	return err
}

func (c *limitedConn) unixConn() *net.UnixConn { return c.UnixConn }
