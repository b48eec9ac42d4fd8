// Package mtlspolicy decides a workload's effective mTLS mode from the trust
// domain's policy set. It is a leaf shared by the CA (which stores policies,
// checks readiness and reports status) and the agent (which serves each
// proxy its mode): both must agree on the same pure function, Effective.
//
//	policies := []mtlspolicy.Policy{
//		{Mode: mtlspolicy.Permissive},                                         // trust-domain default
//		{Prefix: "spiffe://example.org/prod/", Mode: mtlspolicy.Strict},       // a path prefix
//		{SPIFFEID: "spiffe://example.org/prod/legacy", Mode: mtlspolicy.Permissive, ExemptPorts: []uint32{9090}},
//		{SPIFFEID: "spiffe://example.org/prod/legacy", Port: 8443, Mode: mtlspolicy.Strict},
//	}
//	mode, dryRun, exempt := mtlspolicy.Effective(policies, "spiffe://example.org/prod/legacy", 8443)
//	// mode == Strict (the port policy), dryRun == false, exempt == false
//
// # Precedence
//
// A policy matches a workload when its scope does: the trust-domain default
// (neither SPIFFEID nor Prefix set) matches every workload, a Prefix matches
// the SPIFFE IDs that start with it (prefixes end in "/", so they match
// whole path segments), and a SPIFFEID matches that ID only. A policy with
// a Port matches connections to that port only; Port 0 matches every port.
//
// Among the matching policies the winner is, in this order:
//
//  1. a policy for the port over one for every port ("a port setting wins
//     for its port"), whatever their scopes;
//  2. then the most specific scope: an exact SPIFFE ID over a prefix over
//     the trust-domain default;
//  3. then, between prefixes, the longest.
//
// When nothing matches, the mode is Permissive: a mesh starts out
// accepting both, and operators tighten it.
//
// Exempt ports (health checks) are the union of the ExemptPorts of every
// matching every-port policy: an exemption made at the trust-domain level
// is not undone by a more specific policy that does not repeat it. A
// connection to an exempt port passes as plaintext in every mode.
//
// DryRun is reported only with Strict: it asks the enforcer to let through
// (and count) what Strict would refuse.
//
// Asking about port 0 means "the workload as a whole": only every-port
// policies apply, and nothing is exempt.
package mtlspolicy
