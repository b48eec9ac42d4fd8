// Package kubeapi is a small client of the Kubernetes API: the few calls
// signet makes (TokenReview create, Node and Pod get, Pod list and watch by
// field selector), on net/http and encoding/json.
//
// It exists so that neither the CA nor the agent links client-go: its
// generated clientset, scheme and informers weigh tens of megabytes of
// code and memory, and signet needs five calls on two API groups
// (core/v1, authentication.k8s.io/v1). The types here hold only the fields
// signet reads.
//
// A Client comes from a kubeconfig file or from the in-cluster service
// account:
//
//	c, err := kubeapi.LoadKubeconfig(path) // or kubeapi.InCluster()
//	rev, err := c.CreateTokenReview(ctx, token, []string{"signet"})
//	pod, err := c.GetPod(ctx, ns, name)
//	if kubeapi.IsNotFound(err) { ... }
//
// A kubeconfig is read from goccy/go-yaml's parsed nodes, the way signet
// reads its own config files, not through that library's reflective
// Unmarshal, which signet-agent does not link (issue 19).
//
// Bearer tokens given by file (in-cluster, or a kubeconfig's tokenFile)
// are read again before each call: projected tokens rotate.
package kubeapi
