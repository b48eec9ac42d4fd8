// Package kube holds signet's tests against a real Kubernetes API server.
//
// test/kube is a Go module of its own, so that signet's go.mod never
// depends on k8s.io/kubernetes: it pins k8s.io/kubernetes (whose
// staging modules it replaces with the published ones of the same release),
// the etcd server Kubernetes supports, and client-go, and replaces
// github.com/signet-mesh/signet with the checkout around it. Package
// kubetest runs the API server and etcd; cmd/buildbins builds them.
//
// Run from the repository root:
//
//	go -C test/kube run ./cmd/buildbins   # about 10 minutes the first time, cached after
//	go -C test/kube test -race ./...
//
// The smoke test here checks the Kubernetes behaviour signet relies on:
// pod-bound service account tokens, their review, their refusal once the
// pod is gone, and a node's pods listed and watched by field selector.
package kube
