// Package k8spsat attests nodes by the projected service account token of
// the agent's pod (node attestor "k8s_psat"), checked against the API
// server of the cluster the agent names.
//
// For each configured cluster the Attestor holds an API client (kubeconfig
// or in-cluster credentials), the audience tokens must carry ("signet"),
// and the service accounts agents may run as. Attest:
//
//  1. runs a TokenReview for the audience: the API server checks the
//     token's signature, expiry, audience and that the pod it is bound to
//     still exists;
//
//  2. requires the service account to be on the cluster's allow list and
//     the token to be bound to a pod (its review names the pod and node);
//
//  3. gets the pod (same uid, on the same node): the API server caches a
//     successful review for about 10 s, so a token whose pod was just
//     deleted could otherwise still pass;
//
//  4. gets the node (same uid) for its labels.
//
//     a, err := k8spsat.New([]k8spsat.Cluster{{Name: "prod", Client: c, Audience: "signet",
//     AllowList: []string{"signet:agent"}}})
//     res, err := a.Attest(ctx, "prod", token)
//     var refused *k8spsat.RefusedError
//     if errors.As(err, &refused) { /* PermissionDenied, audited with refused.Reason */ }
//
// The node's SPIFFE ID is spiffe://<td>/signet/agent/k8s_psat/<cluster>/<node-uid>:
// a node keeps its identity across agent pods (a rolling update), and a
// node deleted and created again under the same name is a new node.
//
// # Automatic identities
//
// A cluster with AutoIdentity gives every pod on its attested nodes
// spiffe://<td>/ns/<namespace>/sa/<service-account>. Run keeps a view of
// the cluster's pods (list and watch) so that the CA can tell each node
// which of those identities its pods need (AutoIdentities, Changed);
// CheckAutoIdentity asks the API server itself, before each signing,
// whether a pod of the service account runs on the asking node.
//
// # Caveats
//
// The check is per service account on a node, not per pod: a node that
// runs one pod of a service account may mint that account's identity
// (for any of its pods); it can never mint one for an account with no pod
// on it.
package k8spsat
