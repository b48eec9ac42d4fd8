// Package nodesvid is the node's identity: the node SVID that
// authenticates the agent to the CA. It loads the stored SVID, or attests
// with a join token; renews it when agent/rotate says it is due; keeps it
// (key encrypted) and the CA's last bundle under the data dir; and gives
// it up when the CA refuses it for good.
//
//	n := nodesvid.New(nodesvid.Config{ServerAddress: addr, TrustDomain: td, TrustBundle: roots,
//		JoinToken: tok, DataDir: dir, KeyPassphrase: pass, NewKey: newKey, CA: conn})
//	src, err := n.Obtain(ctx)          // stored, or attested
//	c, err := client.Dial(addr, td, src)
//	go n.Run(ctx)                      // renews on each n.RenewNow()
//	if _, ok := nodeapi.NodeRejection(err); ok { n.Rejected(err) }
//
// # Files under the data dir
//
//   - node-svid.pem: the node SVID's chain and its key, encrypted with the
//     key passphrase, in one file written atomically;
//   - bundle.pem: the last trust bundle from the CA; after a root rotation
//     it, not the bootstrap --trust-bundle, authenticates the CA. It is
//     rewritten only when the roots change, not on every reconnect, and
//     always before the CA hears that the agent serves them (SaveBundle,
//     called by agent/report);
//   - join-token.sha256: the SHA-256 of the join token node-svid.pem came
//     from (never the token itself);
//   - node-svid.rejected.pem: a node SVID the CA refused for good, kept
//     for the operator, never used again.
//
// # Which identity a start uses
//
// A restart needs no token: the stored node SVID is used while it has not
// expired. A configured join token whose hash differs from
// join-token.sha256 is a new token, given on purpose (typically after
// `signet node evict` or a forced `signet token create`): the agent
// attests with it and replaces the stored identity. The same token, or
// none, keeps the stored identity; so does any token when no hash was
// recorded (an identity stored by an older agent), since a used token
// cannot attest again.
//
// # When the CA refuses the identity
//
// The CA answers a node it refuses for good (evicted, superseded by a newer
// attestation of the same name, unknown) with nodeapi's rejection. The
// agent's tasks stop on it instead of retrying, and the agent calls
// Rejected: one ERROR line names the identity and says what to do (create a
// new join token and restart the agent with it), the stored SVID moves to
// node-svid.rejected.pem, and Ready reports the rejection (/readyz and
// `signet healthcheck` say not ready). The agent keeps serving the SVIDs it
// holds until they expire. A start without a token then fails at once,
// saying the same.
package nodesvid
