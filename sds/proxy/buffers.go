package proxy

import "sync"

// Buffer sizes. A connection starts with a small buffer and moves to a big
// one while a transfer fills the small one, and back when it slows down:
// idle and interactive connections hold little memory, bulk transfers take
// few system calls (and, on loopback, few wake-ups of the next hop).
const (
	// smallBuffer holds one TLS record's payload.
	smallBuffer = 16 << 10
	bigBuffer   = 256 << 10
	// slowRead is a read, in big mode, small enough to go back to small.
	slowRead = bigBuffer / 8
)

var (
	smallBuffers = sync.Pool{New: func() any { b := make([]byte, smallBuffer); return &b }}
	bigBuffers   = sync.Pool{New: func() any { b := make([]byte, bigBuffer); return &b }}
	// writeBuffers hold batched TLS writes, only while a batch lasts.
	writeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, bigBuffer+bigBuffer/8); return &b }}
)

// adaptiveBuffer is a pooled buffer that grows and shrinks with the
// transfer. It is not safe for concurrent use.
type adaptiveBuffer struct {
	p   *[]byte
	big bool
}

// bytes returns the current buffer.
func (a *adaptiveBuffer) bytes() []byte {
	if a.p == nil {
		a.p = smallBuffers.Get().(*[]byte)
	}
	return *a.p
}

// adapt picks the buffer for the next read after a read of n bytes, once
// those bytes have been used.
func (a *adaptiveBuffer) adapt(n int) {
	switch {
	case !a.big && n == len(a.bytes()):
		smallBuffers.Put(a.p)
		a.p, a.big = bigBuffers.Get().(*[]byte), true
	case a.big && n < slowRead:
		bigBuffers.Put(a.p)
		a.p, a.big = smallBuffers.Get().(*[]byte), false
	}
}

// grow moves to a big buffer (the current content is dropped).
func (a *adaptiveBuffer) grow() {
	if !a.big {
		a.release()
		a.p, a.big = bigBuffers.Get().(*[]byte), true
	}
}

// release returns the buffer to its pool.
func (a *adaptiveBuffer) release() {
	if a.p == nil {
		return
	}
	if a.big {
		bigBuffers.Put(a.p)
	} else {
		smallBuffers.Put(a.p)
	}
	a.p, a.big = nil, false
}
