// Package proxy is the mTLS enforcement of `signet proxy`: a layer-4 sidecar
// that takes its certificate and trust bundle over SDS from the node agent
// (as Envoy would), enforces its workload's effective mTLS mode on inbound
// connections, originates mTLS on outbound ones, and reports what it sees so
// that operators can tell when a workload is ready for STRICT.
//
//	sds := client.New(client.Config{SocketPath: sock, ResourceNames: []string{id.String(), server.RootCAName}})
//	go sds.Run(ctx)
//	sds.WaitReady(ctx)
//	agent, _ := proxy.DialAgent(proxy.AgentConfig{SocketPath: sock, SPIFFEID: id})
//	defer agent.Close()
//	p, _ := proxy.New(proxy.Config{SPIFFEID: id, Credentials: proxy.SDSCredentials(sds, id), Policy: agent, Reporter: agent})
//	err := p.Run(ctx,
//		proxy.Inbound{Listener: inLn, Upstream: "127.0.0.1:8080"},
//		proxy.Inbound{Listener: healthLn, Upstream: "127.0.0.1:8081", Health: true},
//		proxy.Outbound{Listener: outLn, Remote: "10.0.0.7:15006", PeerID: backendID},
//	)
//
// # Inbound
//
// Each inbound connection is decided when it is accepted, by the effective
// mode of the proxy's SPIFFE ID on the listener's port (Config.Policy, which
// follows policy changes live):
//
//   - a Health listener, or a port the policy exempts, passes plaintext in
//     every mode and is not counted;
//   - DISABLE passes the bytes through as they come (plaintext);
//   - PERMISSIVE peeks at the first bytes (at most Config.DetectTimeout for
//     the client to speak): a TLS ClientHello (0x16 0x03) gets an mTLS
//     handshake, anything else, or silence, passes as plaintext;
//   - STRICT does an mTLS handshake and closes anything else.
//
// An mTLS handshake presents the proxy's current certificate and requires a
// client X509-SVID that chains to the bundle of the proxy's trust domain
// and, when Config.AllowedPeers is set, names one of those IDs. Credentials
// are read at every handshake, so a rotated certificate or bundle is used by
// the next connection; connections already open are never touched, by
// rotation or by a policy change. The decrypted stream is spliced to the
// upstream, half-closes included.
//
// STRICT in dry run lets through what STRICT would refuse: plaintext passes
// as in PERMISSIVE, and a TLS client whose certificate does not verify (or
// has none) completes the handshake and is served; each such connection is
// counted as refused and logged.
//
// # Outbound
//
// An outbound listener takes plaintext from the local application, dials
// the remote, and originates mTLS with the proxy's certificate. The remote
// must present an X509-SVID that chains to the bundle and names exactly the
// listener's PeerID; otherwise the local connection is closed.
//
// # Counting
//
// Every inbound connection that is not exempt counts once, by port and
// source IP, as mtls, plaintext or refused; a plaintext connection let
// through in dry run counts as both plaintext and refused. Every
// Config.ReportInterval the counts since the last report go to
// Config.Reporter (the agent, which forwards them to the CA), with the
// sources of plaintext; a failed report keeps them for the next.
//
// # Performance
//
// A spliced direction is one goroutine: read, (de/en)crypt, write. Buffers
// start small (one TLS record) and grow to 256 KiB while a transfer fills
// them, and shrink back when it slows (buffers.go), so idle connections
// hold little and bulk transfers take few system calls. Under a TLS
// connection the transport reads ahead while the peer sends in bulk, and
// gathers the records a write produces into one system call; the copy loop
// takes every record already received before it writes (transport.go,
// pipe.go). Plaintext to plaintext (health and exempt ports, DISABLE) is
// spliced by the kernel. BenchmarkThroughput and BenchmarkHandshakes compare
// an outbound and inbound proxy pair with a direct Go TLS connection in the
// same run.
//
// # Caveats
//
// Run serves inbound listeners only once Policy has delivered a first
// decision: until then connections wait in the listen backlog, rather than
// be served under a guessed mode. Outbound listeners serve at once.
//
// PERMISSIVE cannot serve server-first protocols (SMTP, MySQL) without a
// delay: the proxy waits DetectTimeout for the client's first bytes.
//
// Run closes the listeners when ctx ends, then waits up to
// Config.DrainTimeout for open connections to finish before closing them.
package proxy
