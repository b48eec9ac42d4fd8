package proxy_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/signet-mesh/signet/internal/mtlspolicy"
	"github.com/signet-mesh/signet/sds/proxy"
)

// The benchmarks compare the proxies with a direct Go TLS connection in the
// same run: the same certificates (from ca/catest), the same SPIFFE
// verification (go-spiffe on the direct side, the proxy's own on the
// other), all on 127.0.0.1.
//
//	go test -run '^$' -bench . -benchtime 2s ./sds/proxy/
//
// "direct" is client --mTLS--> server. "pair" is the sidecar path:
// client --plaintext--> outbound proxy --mTLS--> inbound proxy (STRICT)
// --plaintext--> server.

const benchChunk = 1 << 20

// benchServers starts the direct TLS server and the proxy pair, both in
// front of handler, and returns the address to dial for each.
func benchServers(b *testing.B, handler func(net.Conn)) (directAddr string, directCfg *tls.Config, pairAddr string) {
	e := newEnv(b)
	serverSVID := e.ca.CreateX509SVID(b, serverID)

	serve := func(ln net.Listener, wrap func(net.Conn) net.Conn) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handler(wrap(c))
		}
	}
	direct := listen(b)
	srvCfg := tlsconfig.MTLSServerConfig(serverSVID, e.bundle, tlsconfig.AuthorizeID(clientID))
	go serve(direct, func(c net.Conn) net.Conn { return tls.Server(c, srvCfg) })

	app := listen(b)
	go serve(app, func(c net.Conn) net.Conn { return c })
	in, out := listen(b), listen(b)
	inProxy := e.startProxy(b, proxy.Config{Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Strict)}, AllowedPeers: []spiffeid.ID{clientID}},
		proxy.Inbound{Listener: in, Upstream: app.Addr().String()})
	waitReady(b, inProxy)
	e.startProxy(b, proxy.Config{SPIFFEID: clientID, Credentials: proxy.NewStaticCredentials(e.client, e.bundle), Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Permissive)}},
		proxy.Outbound{Listener: out, Remote: in.Addr().String(), PeerID: serverID})

	return direct.Addr().String(), tlsconfig.MTLSClientConfig(e.client, e.bundle, tlsconfig.AuthorizeID(serverID)), out.Addr().String()
}

// benchRound is what the sink acknowledges: a byte back for every
// benchRound bytes received. Long enough that the pipeline of the proxy
// pair, idle while the direct round ran, reaches its steady state.
const benchRound = 256 * benchChunk

// BenchmarkThroughput streams 1 MiB writes over one connection to a server
// that discards them; MB/s is the figure.
func BenchmarkThroughput(b *testing.B) {
	sink := func(c net.Conn) {
		defer c.Close()
		// The same reads for both: 64 KiB at a time, as the proxies do.
		buf := make([]byte, 64<<10)
		var total int64
		for {
			n, err := c.Read(buf)
			if total/benchRound != (total+int64(n))/benchRound {
				c.Write([]byte{1})
			}
			total += int64(n)
			if err != nil {
				break
			}
		}
		c.Write([]byte{2}) // tells the client everything arrived
	}
	directAddr, directCfg, pairAddr := benchServers(b, sink)
	dialDirect := func() (net.Conn, error) { return tlsDial(directAddr, directCfg) }
	dialPair := func() (net.Conn, error) { return net.Dial("tcp", pairAddr) }
	run := func(b *testing.B, dial func() (net.Conn, error)) {
		c, err := dial()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, benchChunk)
		b.SetBytes(benchChunk)
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadAll(c); err != nil {
			b.Fatalf("waiting for the sink: %v", err)
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, dialDirect) })
	b.Run("pair", func(b *testing.B) { run(b, dialPair) })

	// alternating moves 256 MiB over each path in turn, b.N times, on two
	// connections kept open, so that both paths see the same machine
	// (other load, CPU frequency) in their steady state; pair/direct is
	// the ratio of their throughputs.
	b.Run("alternating", func(b *testing.B) {
		var conns [2]net.Conn
		for i, dial := range []func() (net.Conn, error){dialDirect, dialPair} {
			c, err := dial()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			conns[i] = c
		}
		buf := make([]byte, benchChunk)
		ack := make([]byte, 1)
		var took [2]time.Duration
		for range b.N {
			for i, c := range conns {
				start := time.Now()
				for range benchRound / benchChunk {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := c.Read(ack); err != nil {
					b.Fatalf("waiting for the sink: %v", err)
				}
				took[i] += time.Since(start)
			}
		}
		mb := float64(b.N*benchRound) / 1e6
		b.ReportMetric(mb/took[0].Seconds(), "direct-MB/s")
		b.ReportMetric(mb/took[1].Seconds(), "pair-MB/s")
		b.ReportMetric(took[0].Seconds()/took[1].Seconds(), "pair/direct")
	})
}

// BenchmarkHandshakes opens connections and makes one round trip on each,
// so that both ends have finished the handshake; conns/s is the figure.
// "serial" opens one at a time (latency); "parallel" keeps GOMAXPROCS*4
// clients busy (capacity).
func BenchmarkHandshakes(b *testing.B) {
	echo := func(c net.Conn) {
		defer c.Close()
		io.Copy(c, c)
	}
	directAddr, directCfg, pairAddr := benchServers(b, echo)
	once := func(dial func() (net.Conn, error)) error {
		c, err := dial()
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte{1}); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, 1))
		return err
	}
	dials := []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"direct", func() (net.Conn, error) { return tlsDial(directAddr, directCfg) }},
		{"pair", func() (net.Conn, error) { return net.Dial("tcp", pairAddr) }},
	}
	for _, d := range dials {
		b.Run("serial/"+d.name, func(b *testing.B) {
			for range b.N {
				if err := once(d.dial); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
	// alternating opens 200 connections over each path in turn, b.N
	// times (see BenchmarkThroughput); pair/direct is the ratio of their
	// connection rates.
	b.Run("alternating", func(b *testing.B) {
		const round = 200
		var took [2]time.Duration
		for range b.N {
			for i, d := range dials {
				start := time.Now()
				for range round {
					if err := once(d.dial); err != nil {
						b.Fatal(err)
					}
				}
				took[i] += time.Since(start)
			}
		}
		n := float64(b.N * round)
		b.ReportMetric(n/took[0].Seconds(), "direct-conns/s")
		b.ReportMetric(n/took[1].Seconds(), "pair-conns/s")
		b.ReportMetric(took[0].Seconds()/took[1].Seconds(), "pair/direct")
	})
	for _, d := range dials {
		b.Run("parallel/"+d.name, func(b *testing.B) {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := once(d.dial); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
}
