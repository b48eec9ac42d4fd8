// Package client is an SDS v3 client: it follows secrets from the node
// agent's socket the way Envoy does, for `signet proxy` and for tests.
//
//	c := client.New(client.Config{
//		SocketPath: "/run/signet/agent.sock",
//		// ResourceNames defaults to "default" and "ROOTCA".
//	})
//	go c.Run(ctx) // returns nil when ctx ends
//	if err := c.WaitReady(ctx); err != nil {
//		return err // names the secrets that never came
//	}
//	for {
//		cert, roots, _ := c.Current()
//		// use cert and roots until the next update
//		select {
//		case <-c.Updates():
//		case <-ctx.Done():
//			return nil
//		}
//	}
//
// # Protocol
//
// The client opens one StreamSecrets stream for its resource names and
// answers every response, as the xDS protocol asks:
//
//   - If every requested secret in the response parses (PEM that decodes,
//     a private key that matches its certificate, a validation context with
//     trusted_ca or a well-formed SPIFFE validator configuration), the
//     secrets replace the previous ones and the client ACKs with the
//     response's version_info and nonce.
//   - Otherwise it NACKs: error_detail says what is wrong and version_info
//     stays at the last accepted version. Nothing changes; the previous
//     secrets stay in use.
//
// Secrets that were not requested are ignored. Updates is notified only when
// content changes, not when the agent resends the same secrets (after a
// reconnect, say).
//
// When the stream fails, Run reconnects after a delay from internal/backoff
// (exponential, full jitter), with a fresh connection each time so that
// gRPC's own reconnection backoff does not stack on top. The delay resets
// after each accepted response. Accepted secrets stay available while
// disconnected; whether to keep using them until they expire is the caller's
// decision (Secret.Certificate.Leaf.NotAfter).
package client
