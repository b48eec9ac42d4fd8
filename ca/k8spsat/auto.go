package k8spsat

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/kubeapi"
)

// Automatic identities (a cluster's AutoIdentity): every pod on an
// attested node of the cluster gets spiffe://<td>/ns/<namespace>/sa/<sa>
// with no entry. The Attestor keeps a view of the cluster's pods (a list
// and watch of all pods: namespace, service account and node of each) to
// tell each node which identities its pods need, and checks with the API
// server itself before each one is minted: a node gets an automatic
// identity only while a pod of that service account runs on it.

// AutoIdentity is the namespace and service account of pods on a node.
type AutoIdentity struct {
	Namespace, ServiceAccount string
}

// podKey is what the view keeps of a pod.
type podKey struct {
	node string
	id   AutoIdentity
}

// podView is one cluster's pods.
type podView struct {
	mu   sync.Mutex
	pods map[string]podKey // by pod uid
}

func podKeyOf(p *kubeapi.Pod) (podKey, bool) {
	if p.Spec.NodeName == "" || p.Spec.ServiceAccountName == "" || finished(p) {
		return podKey{}, false
	}
	return podKey{node: p.Spec.NodeName, id: AutoIdentity{Namespace: p.Metadata.Namespace, ServiceAccount: p.Spec.ServiceAccountName}}, true
}

// finished: a pod whose containers have all stopped for good runs nothing
// that needs an identity.
func finished(p *kubeapi.Pod) bool {
	return p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed"
}

// Run keeps the pod views of the clusters with AutoIdentity until ctx ends
// (then nil), retrying the API with backoff. Without such clusters it
// returns at once.
func (a *Attestor) Run(ctx context.Context, clk clock.Clock, log *slog.Logger) error {
	if a == nil {
		return nil
	}
	clk = clock.OrReal(clk)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g, ctx := errgroup.WithContext(ctx)
	for name, c := range a.clusters {
		if !c.AutoIdentity {
			continue
		}
		v := a.views[name]
		g.Go(func() error {
			b := backoff.New(backoff.Config{})
			for ctx.Err() == nil {
				err := kubeapi.ListWatchPods(ctx, c.Client, "", kubeapi.PodHandler{
					Replace: func(pods []kubeapi.Pod) { a.replace(v, pods) },
					Event: func(ev kubeapi.PodEvent) {
						if ev.Type == kubeapi.EventDeleted {
							a.put(v, ev.Pod.Metadata.UID, nil)
						} else {
							a.put(v, ev.Pod.Metadata.UID, &ev.Pod)
						}
					},
				}, func(int) { b.Reset() })
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					d := b.Next()
					log.Warn("watching the cluster's pods for automatic identities; retrying", logCluster, name, logError, err, logRetryIn, d)
					if backoff.Sleep(ctx, clk, d) != nil {
						return nil
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

func (a *Attestor) replace(v *podView, pods []kubeapi.Pod) {
	v.mu.Lock()
	v.pods = map[string]podKey{}
	for i := range pods {
		if k, ok := podKeyOf(&pods[i]); ok {
			v.pods[pods[i].Metadata.UID] = k
		}
	}
	v.mu.Unlock()
	a.notify()
}

// put records pod (nil: deleted) and wakes the watchers if that changed
// what any node needs.
func (a *Attestor) put(v *podView, uid string, pod *kubeapi.Pod) {
	v.mu.Lock()
	old, had := v.pods[uid]
	var k podKey
	ok := pod != nil
	if ok {
		k, ok = podKeyOf(pod)
	}
	if ok {
		v.pods[uid] = k
	} else {
		delete(v.pods, uid)
	}
	v.mu.Unlock()
	if had != ok || old != k {
		a.notify()
	}
}

func (a *Attestor) notify() {
	a.mu.Lock()
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

// Changed returns a channel closed at the next change of the automatic
// identities any node needs.
func (a *Attestor) Changed() <-chan struct{} {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// AutoIdentityEnabled reports whether cluster gives automatic identities.
func (a *Attestor) AutoIdentityEnabled(cluster string) bool {
	if a == nil {
		return false
	}
	c, ok := a.clusters[cluster]
	return ok && c.AutoIdentity
}

// AutoIdentities returns the automatic identities the pods on node of
// cluster need, as the view has them, sorted.
func (a *Attestor) AutoIdentities(cluster, node string) []AutoIdentity {
	if !a.AutoIdentityEnabled(cluster) {
		return nil
	}
	v := a.views[cluster]
	v.mu.Lock()
	seen := map[AutoIdentity]bool{}
	for _, k := range v.pods {
		if k.node == node {
			seen[k.id] = true
		}
	}
	v.mu.Unlock()
	out := make([]AutoIdentity, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	slices.SortFunc(out, func(x, y AutoIdentity) int {
		if x.Namespace != y.Namespace {
			return compare(x.Namespace, y.Namespace)
		}
		return compare(x.ServiceAccount, y.ServiceAccount)
	})
	return out
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ReasonNoSuchPod: no pod of the service account runs on the node asking
// for its automatic identity.
const ReasonNoSuchPod = "no_such_pod"

// CheckAutoIdentity asks the API server, not the view, whether a pod of
// id's service account runs on node of cluster: the CA's check before it
// mints id's automatic identity for that node. A refusal is a
// *RefusedError.
func (a *Attestor) CheckAutoIdentity(ctx context.Context, cluster, node string, id AutoIdentity) error {
	if !a.AutoIdentityEnabled(cluster) {
		return refuse(ReasonUnknownCluster, "cluster %q does not give automatic identities (auto_identity)", cluster)
	}
	c := a.clusters[cluster]
	list, err := c.Client.ListPodsIn(ctx, id.Namespace, kubeapi.NodeSelector(node)+",spec.serviceAccountName="+id.ServiceAccount)
	if err != nil {
		return err
	}
	for i := range list.Items {
		if p := &list.Items[i]; !finished(p) && p.Spec.NodeName == node && p.Spec.ServiceAccountName == id.ServiceAccount {
			return nil
		}
	}
	return refuse(ReasonNoSuchPod, "cluster %q: no pod of service account %s/%s runs on node %s", cluster, id.Namespace, id.ServiceAccount, node)
}
