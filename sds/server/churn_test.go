package server_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/signet-mesh/signet/sds/server"
)

// TestStreamsUnderChurn drives many streams at once while the source
// rotates quickly: clients ACK and NACK, change their subscriptions, and
// hang up and reconnect in the middle of pushes. Every stream still open
// at the end must hold the final SVID, and once all are closed no
// subscription and no push goroutine may be left behind. It exists for the
// race detector as much as for its assertions: requests and pushes of one
// stream run on different goroutines.
func TestStreamsUnderChurn(t *testing.T) {
	const (
		conns     = 4
		streams   = 40
		rotations = 200
	)
	path, src, ca := scaleServer(t)
	bundle := ca.Bundle()
	svids := make([]*x509svid.SVID, 8)
	for i := range svids {
		svids[i] = ca.SVID(t, "/web")
	}
	goroutinesBefore := runtime.NumGoroutine()

	clients := make([]secretv3.SecretDiscoveryServiceClient, conns)
	for i := range clients {
		clients[i] = secretv3.NewSecretDiscoveryServiceClient(dial(t, path))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	var (
		mu     sync.Mutex
		latest = make([]string, streams) // serial of the newest default each stream got
		errs   []error
		opened int
		pushes int
		wg     sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	stop := make(chan struct{})
	for i := range streams {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for {
				// Every few streams hang up after a few responses and
				// reconnect; the rest stay until stop.
				hangUpAfter := -1
				if i%4 == 0 {
					hangUpAfter = 1 + rng.IntN(4)
				}
				mu.Lock()
				opened++
				mu.Unlock()
				err := churnStream(ctx, clients[i%conns], rng, hangUpAfter, stop, func(serial string) {
					mu.Lock()
					latest[i] = serial
					pushes++
					mu.Unlock()
				})
				if err != nil {
					fail(fmt.Errorf("stream %d: %w", i, err))
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}

	// Rotate quickly: latest wins, so streams may skip versions, but never
	// end on a stale one.
	for r := range rotations {
		src.Set(oneIdentity(svids[r%len(svids)], bundle))
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // pacing, not waiting for anything
	}
	final := svids[len(svids)-1]
	src.Set(oneIdentity(final, bundle))
	want := final.Certificates[0].SerialNumber.Text(16)
	waitFor(t, 20*time.Second, "every stream to hold the final SVID", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range latest {
			if s != want {
				return false
			}
		}
		return len(errs) == 0
	})
	close(stop)
	cancel()
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("%d streams opened, %d default certificates received over %d rotations", opened, pushes, rotations)

	waitFor(t, 10*time.Second, "every subscription to be closed", func() bool { return src.Subscribers() == 0 })
	waitFor(t, 10*time.Second, "the streams' goroutines to exit", func() bool {
		return runtime.NumGoroutine() <= goroutinesBefore+conns*8 // client and server transports stay open
	})
}

// churnStream runs one client stream: it subscribes, then ACKs or NACKs
// each response, now and then changing its subscription, until it has had
// hangUpAfter responses (never, if negative), stop closes or ctx ends.
// onDefault gets the serial of each default certificate received.
func churnStream(ctx context.Context, client secretv3.SecretDiscoveryServiceClient, rng *rand.Rand, hangUpAfter int, stop <-chan struct{}, onDefault func(string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.StreamSecrets(ctx)
	if err != nil {
		return fmt.Errorf("opening: %w", err)
	}
	names := []string{server.DefaultName, server.RootCAName}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: server.SecretTypeURL, ResourceNames: names}); err != nil {
		return fmt.Errorf("subscribing: %w", err)
	}
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for n := 0; hangUpAfter < 0 || n < hangUpAfter; n++ {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil // we hung up
			}
			return fmt.Errorf("receiving: %w", err)
		}
		serial, err := defaultSerial(resp)
		if err != nil {
			return err
		}
		if serial != "" {
			onDefault(serial)
		}
		req := &discoveryv3.DiscoveryRequest{TypeUrl: server.SecretTypeURL, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(), ResourceNames: names}
		switch p := rng.IntN(10); {
		case p == 0: // NACK
			req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: "churn test rejects this one"}
		case p == 1: // drop ROOTCA, or take it back
			if len(names) == 2 {
				names = names[:1]
			} else {
				names = append(names, server.RootCAName)
			}
			req.ResourceNames = names
		}
		if err := stream.Send(req); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sending: %w", err)
		}
	}
	return nil
}

// defaultSerial returns the serial of the default certificate in resp, or
// "" when resp does not carry it.
func defaultSerial(resp *discoveryv3.DiscoveryResponse) (string, error) {
	for _, a := range resp.GetResources() {
		s := &tlsv3.Secret{}
		if err := a.UnmarshalTo(s); err != nil {
			return "", fmt.Errorf("decoding secret: %w", err)
		}
		if s.GetName() != server.DefaultName {
			continue
		}
		block, _ := pem.Decode(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
		if block == nil {
			return "", errors.New("default secret without a PEM certificate")
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return "", fmt.Errorf("default certificate: %w", err)
		}
		return cert.SerialNumber.Text(16), nil
	}
	return "", nil
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
