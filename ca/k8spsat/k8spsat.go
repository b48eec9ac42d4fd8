package k8spsat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/signet-mesh/signet/ca/registration"
	"github.com/signet-mesh/signet/internal/kubeapi"
)

// Name is the attestor's name, in node SPIFFE IDs, selectors and audit
// records.
const Name = "k8s_psat"

// DefaultAudience is the audience agent tokens carry unless a cluster
// says otherwise.
const DefaultAudience = "signet"

// API is the part of the Kubernetes API the attestor calls
// (kubeapi.Client implements it).
type API interface {
	CreateTokenReview(ctx context.Context, token string, audiences []string) (*kubeapi.TokenReview, error)
	GetPod(ctx context.Context, namespace, name string) (*kubeapi.Pod, error)
	GetNode(ctx context.Context, name string) (*kubeapi.Node, error)
	// For automatic identities.
	kubeapi.PodSource
	ListPodsIn(ctx context.Context, namespace, fieldSelector string) (*kubeapi.PodList, error)
}

// Cluster is one cluster whose agents may attest.
type Cluster struct {
	// Name is what agents give as --k8s-cluster; it is a path segment
	// of their node IDs.
	Name   string
	Client API
	// Audience tokens must be issued for; empty means DefaultAudience.
	Audience string
	// AllowList names the service accounts agents run as, each
	// "namespace:name". Required: an empty list would let any pod's
	// token attest a node.
	AllowList []string
	// AutoIdentity gives every pod on the cluster's attested nodes
	// spiffe://<td>/ns/<namespace>/sa/<service-account> with no entry
	// (see auto.go). The CA then lists and watches the cluster's pods.
	AutoIdentity bool
}

// Attestor checks agent tokens against their clusters' API servers. It is
// safe for concurrent use.
type Attestor struct {
	clusters map[string]*Cluster
	views    map[string]*podView // of clusters with AutoIdentity

	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) when a view changes
}

// New returns an Attestor for clusters, checking each.
func New(clusters []Cluster) (*Attestor, error) {
	a := &Attestor{clusters: map[string]*Cluster{}, views: map[string]*podView{}, changed: make(chan struct{})}
	for _, c := range clusters {
		if c.Name == "" {
			return nil, errors.New("k8spsat: a cluster needs a name")
		}
		if err := registration.ParsePathSegment("cluster name", c.Name); err != nil {
			return nil, fmt.Errorf("k8spsat: %w", err)
		}
		if _, dup := a.clusters[c.Name]; dup {
			return nil, fmt.Errorf("k8spsat: cluster %q is configured twice", c.Name)
		}
		if c.Client == nil {
			return nil, fmt.Errorf("k8spsat: cluster %q has no API client", c.Name)
		}
		if len(c.AllowList) == 0 {
			return nil, fmt.Errorf("k8spsat: cluster %q: service_account_allow_list is empty; name the agents' service accounts as namespace:name", c.Name)
		}
		for _, sa := range c.AllowList {
			if err := ParseServiceAccount(sa); err != nil {
				return nil, fmt.Errorf("k8spsat: cluster %q: %w", c.Name, err)
			}
		}
		if c.Audience == "" {
			c.Audience = DefaultAudience
		}
		a.clusters[c.Name] = &c
		if c.AutoIdentity {
			a.views[c.Name] = &podView{pods: map[string]podKey{}}
		}
	}
	return a, nil
}

// ParseServiceAccount checks one allow-list item: "namespace:name".
func ParseServiceAccount(s string) error {
	ns, name, ok := strings.Cut(s, ":")
	if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
		return fmt.Errorf("service account %q: want namespace:name", s)
	}
	return nil
}

// Clusters returns the names of the configured clusters, sorted; none
// for a nil Attestor.
func (a *Attestor) Clusters() []string {
	if a == nil {
		return nil
	}
	var out []string
	for n := range a.clusters {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Reasons a token is refused (RefusedError.Reason), for audit records and
// metrics.
const (
	ReasonUnknownCluster = "unknown_cluster"
	ReasonNotAuthentic   = "token_refused"
	ReasonAudience       = "wrong_audience"
	ReasonNotAllowed     = "service_account_not_allowed"
	ReasonNotPodBound    = "token_not_pod_bound"
	ReasonPodGone        = "pod_gone"
	ReasonNodeGone       = "node_gone"
)

// RefusedError is a token the attestor refuses: the agent's credential is
// not good, as opposed to the API server being unreachable.
type RefusedError struct {
	Reason  string
	Message string
}

func (e *RefusedError) Error() string { return "k8spsat: " + e.Message }

func refuse(reason, format string, args ...any) error {
	return &RefusedError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Result is an attested node.
type Result struct {
	Cluster        string
	NodeName       string
	NodeUID        string
	Namespace      string // of the agent's pod
	ServiceAccount string // of the agent's pod
	PodName        string
	PodUID         string
	NodeLabels     map[string]string
}

// Selectors are the node's selectors: k8s_psat:cluster, node-name,
// agent_ns, agent_sa, and node-label:<key>:<value> for each label, sorted.
func (r *Result) Selectors() []string {
	out := []string{
		Name + ":cluster:" + r.Cluster,
		Name + ":node-name:" + r.NodeName,
		Name + ":agent_ns:" + r.Namespace,
		Name + ":agent_sa:" + r.ServiceAccount,
	}
	for k, v := range r.NodeLabels {
		out = append(out, Name+":node-label:"+k+":"+v)
	}
	slices.Sort(out)
	return out
}

const saPrefix = "system:serviceaccount:"

// Attest checks token, an agent pod's projected service account token, with
// cluster's API server. A token the attestor refuses is a *RefusedError;
// any other error is the API server failing to answer.
func (a *Attestor) Attest(ctx context.Context, cluster, token string) (*Result, error) {
	c, ok := a.clusters[cluster]
	if !ok {
		return nil, refuse(ReasonUnknownCluster, "cluster %q is not configured on this server (k8s_clusters has: %s)", cluster, strings.Join(a.Clusters(), ", "))
	}
	if token == "" {
		return nil, refuse(ReasonNotAuthentic, "the service account token is empty")
	}
	rev, err := c.Client.CreateTokenReview(ctx, token, []string{c.Audience})
	if err != nil {
		return nil, fmt.Errorf("k8spsat: cluster %q: %w", cluster, err)
	}
	st := rev.Status
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "not authenticated"
		}
		return nil, refuse(ReasonNotAuthentic, "cluster %q refused the token for audience %q: %s", cluster, c.Audience, msg)
	}
	if len(st.Audiences) > 0 && !slices.Contains(st.Audiences, c.Audience) {
		return nil, refuse(ReasonAudience, "cluster %q: the token is for audiences %q, not %q", cluster, st.Audiences, c.Audience)
	}
	user := st.User.Username
	if !strings.HasPrefix(user, saPrefix) {
		return nil, refuse(ReasonNotAllowed, "cluster %q: the token is of user %q, not a service account", cluster, user)
	}
	ns, sa, ok := strings.Cut(strings.TrimPrefix(user, saPrefix), ":")
	if !ok {
		return nil, refuse(ReasonNotAllowed, "cluster %q: malformed service account user %q", cluster, user)
	}
	if !slices.Contains(c.AllowList, ns+":"+sa) {
		return nil, refuse(ReasonNotAllowed, "cluster %q: service account %s:%s is not on its service_account_allow_list", cluster, ns, sa)
	}
	r := &Result{
		Cluster:        cluster,
		Namespace:      ns,
		ServiceAccount: sa,
		PodName:        st.User.ExtraValue(kubeapi.ExtraPodName),
		PodUID:         st.User.ExtraValue(kubeapi.ExtraPodUID),
		NodeName:       st.User.ExtraValue(kubeapi.ExtraNodeName),
		NodeUID:        st.User.ExtraValue(kubeapi.ExtraNodeUID),
	}
	if r.PodName == "" || r.PodUID == "" || r.NodeName == "" || r.NodeUID == "" {
		return nil, refuse(ReasonNotPodBound, "cluster %q: the token of %s:%s is not bound to a pod on a node: use a projected service account token volume", cluster, ns, sa)
	}
	pod, err := c.Client.GetPod(ctx, ns, r.PodName)
	switch {
	case kubeapi.IsNotFound(err):
		return nil, refuse(ReasonPodGone, "cluster %q: pod %s/%s the token is bound to no longer exists", cluster, ns, r.PodName)
	case err != nil:
		return nil, fmt.Errorf("k8spsat: cluster %q: %w", cluster, err)
	case pod.Metadata.UID != r.PodUID:
		return nil, refuse(ReasonPodGone, "cluster %q: pod %s/%s (uid %s) the token is bound to no longer exists (a pod of that name has uid %s)", cluster, ns, r.PodName, r.PodUID, pod.Metadata.UID)
	case pod.Spec.NodeName != r.NodeName:
		return nil, refuse(ReasonPodGone, "cluster %q: pod %s/%s runs on node %q, not %q as its token says", cluster, ns, r.PodName, pod.Spec.NodeName, r.NodeName)
	}
	node, err := c.Client.GetNode(ctx, r.NodeName)
	switch {
	case kubeapi.IsNotFound(err):
		return nil, refuse(ReasonNodeGone, "cluster %q: node %s the token names does not exist", cluster, r.NodeName)
	case err != nil:
		return nil, fmt.Errorf("k8spsat: cluster %q: %w", cluster, err)
	case node.Metadata.UID != r.NodeUID:
		return nil, refuse(ReasonNodeGone, "cluster %q: node %s (uid %s) the token names no longer exists (a node of that name has uid %s)", cluster, r.NodeName, r.NodeUID, node.Metadata.UID)
	}
	r.NodeLabels = node.Metadata.Labels
	return r, nil
}
