package k8spsat

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/internal/kubeapi"
)

// fakeAPI answers as an API server holding pods and nodes would, reviewing
// tokens from a table. Hand-written; the real API server is exercised in
// test/kube.
type fakeAPI struct {
	reviews map[string]kubeapi.TokenReviewStatus // by token
	pods    map[string]*kubeapi.Pod              // by namespace/name
	nodes   map[string]*kubeapi.Node             // by name
	down    bool
}

var errDown = errors.New("connection refused")

func (f *fakeAPI) CreateTokenReview(_ context.Context, token string, aud []string) (*kubeapi.TokenReview, error) {
	if f.down {
		return nil, errDown
	}
	st, ok := f.reviews[token]
	if !ok {
		st = kubeapi.TokenReviewStatus{Error: "invalid bearer token"}
	}
	return &kubeapi.TokenReview{Status: st}, nil
}

func (f *fakeAPI) GetPod(_ context.Context, ns, name string) (*kubeapi.Pod, error) {
	if p, ok := f.pods[ns+"/"+name]; ok {
		return p, nil
	}
	return nil, &kubeapi.APIError{Code: 404}
}

func (f *fakeAPI) GetNode(_ context.Context, name string) (*kubeapi.Node, error) {
	if n, ok := f.nodes[name]; ok {
		return n, nil
	}
	return nil, &kubeapi.APIError{Code: 404}
}

func (f *fakeAPI) ListPods(ctx context.Context, sel string) (*kubeapi.PodList, error) {
	return f.ListPodsIn(ctx, "", sel)
}

func (f *fakeAPI) ListPodsIn(context.Context, string, string) (*kubeapi.PodList, error) {
	return &kubeapi.PodList{}, nil
}

func (f *fakeAPI) WatchPods(ctx context.Context, _, _ string, _ func(kubeapi.PodEvent) error) error {
	<-ctx.Done()
	return nil
}

func review(user, pod, podUID, node, nodeUID string) kubeapi.TokenReviewStatus {
	extra := map[string][]string{}
	for k, v := range map[string]string{kubeapi.ExtraPodName: pod, kubeapi.ExtraPodUID: podUID, kubeapi.ExtraNodeName: node, kubeapi.ExtraNodeUID: nodeUID} {
		if v != "" {
			extra[k] = []string{v}
		}
	}
	return kubeapi.TokenReviewStatus{Authenticated: true, Audiences: []string{"signet"}, User: kubeapi.UserInfo{Username: user, Extra: extra}}
}

func TestAttest(t *testing.T) {
	api := &fakeAPI{
		reviews: map[string]kubeapi.TokenReviewStatus{
			"good":          review("system:serviceaccount:signet:agent", "agent-1", "pod-uid-1", "node-a", "node-uid-a"),
			"intruder":      review("system:serviceaccount:default:web", "web-1", "pod-uid-2", "node-a", "node-uid-a"),
			"user":          review("alice", "", "", "", ""),
			"unbound":       review("system:serviceaccount:signet:agent", "", "", "", ""),
			"deleted-pod":   review("system:serviceaccount:signet:agent", "agent-0", "pod-uid-0", "node-a", "node-uid-a"),
			"replaced-pod":  review("system:serviceaccount:signet:agent", "agent-2", "old-uid", "node-a", "node-uid-a"),
			"moved-pod":     review("system:serviceaccount:signet:agent", "agent-3", "pod-uid-3", "node-a", "node-uid-a"),
			"deleted-node":  review("system:serviceaccount:signet:agent", "agent-4", "pod-uid-4", "node-gone", "node-uid-gone"),
			"replaced-node": review("system:serviceaccount:signet:agent", "agent-5", "pod-uid-5", "node-b", "old-node-uid"),
			"other-aud": func() kubeapi.TokenReviewStatus {
				r := review("system:serviceaccount:signet:agent", "agent-1", "pod-uid-1", "node-a", "node-uid-a")
				r.Audiences = []string{"other"}
				return r
			}(),
		},
		pods: map[string]*kubeapi.Pod{
			"signet/agent-1": {Metadata: kubeapi.ObjectMeta{UID: "pod-uid-1"}, Spec: kubeapi.PodSpec{NodeName: "node-a"}},
			"signet/agent-2": {Metadata: kubeapi.ObjectMeta{UID: "new-uid"}, Spec: kubeapi.PodSpec{NodeName: "node-a"}},
			"signet/agent-3": {Metadata: kubeapi.ObjectMeta{UID: "pod-uid-3"}, Spec: kubeapi.PodSpec{NodeName: "node-z"}},
			"signet/agent-4": {Metadata: kubeapi.ObjectMeta{UID: "pod-uid-4"}, Spec: kubeapi.PodSpec{NodeName: "node-gone"}},
			"signet/agent-5": {Metadata: kubeapi.ObjectMeta{UID: "pod-uid-5"}, Spec: kubeapi.PodSpec{NodeName: "node-b"}},
		},
		nodes: map[string]*kubeapi.Node{
			"node-a": {Metadata: kubeapi.ObjectMeta{UID: "node-uid-a", Labels: map[string]string{"zone": "a"}}},
			"node-b": {Metadata: kubeapi.ObjectMeta{UID: "new-node-uid"}},
		},
	}
	a, err := New([]Cluster{{Name: "prod", Client: api, AllowList: []string{"signet:agent"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cluster, token string
		wantReason, wantErr  string
	}{
		{name: "unknown cluster", cluster: "staging", token: "good", wantReason: ReasonUnknownCluster, wantErr: `cluster "staging" is not configured on this server (k8s_clusters has: prod)`},
		{name: "empty token", cluster: "prod", token: "", wantReason: ReasonNotAuthentic, wantErr: "token is empty"},
		{name: "refused by the API server", cluster: "prod", token: "forged", wantReason: ReasonNotAuthentic, wantErr: "invalid bearer token"},
		{name: "audience the server did not ask for", cluster: "prod", token: "other-aud", wantReason: ReasonAudience, wantErr: `not "signet"`},
		{name: "not a service account", cluster: "prod", token: "user", wantReason: ReasonNotAllowed, wantErr: `user "alice", not a service account`},
		{name: "service account not allowed", cluster: "prod", token: "intruder", wantReason: ReasonNotAllowed, wantErr: "default:web is not on its service_account_allow_list"},
		{name: "token bound to no pod", cluster: "prod", token: "unbound", wantReason: ReasonNotPodBound, wantErr: "not bound to a pod"},
		{name: "pod deleted", cluster: "prod", token: "deleted-pod", wantReason: ReasonPodGone, wantErr: "pod signet/agent-0 the token is bound to no longer exists"},
		{name: "pod deleted and made again", cluster: "prod", token: "replaced-pod", wantReason: ReasonPodGone, wantErr: "a pod of that name has uid new-uid"},
		{name: "pod on another node", cluster: "prod", token: "moved-pod", wantReason: ReasonPodGone, wantErr: `runs on node "node-z", not "node-a"`},
		{name: "node deleted", cluster: "prod", token: "deleted-node", wantReason: ReasonNodeGone, wantErr: "node node-gone the token names does not exist"},
		{name: "node deleted and made again", cluster: "prod", token: "replaced-node", wantReason: ReasonNodeGone, wantErr: "a node of that name has uid new-node-uid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Attest(context.Background(), tt.cluster, tt.token)
			var refused *RefusedError
			if !errors.As(err, &refused) {
				t.Fatalf("got %v, want a refusal", err)
			}
			if refused.Reason != tt.wantReason || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("refused %s %q, want %s containing %q", refused.Reason, err, tt.wantReason, tt.wantErr)
			}
		})
	}

	got, err := a.Attest(context.Background(), "prod", "good")
	if err != nil {
		t.Fatal(err)
	}
	want := &Result{Cluster: "prod", NodeName: "node-a", NodeUID: "node-uid-a", Namespace: "signet", ServiceAccount: "agent",
		PodName: "agent-1", PodUID: "pod-uid-1", NodeLabels: map[string]string{"zone": "a"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attested (-want +got):\n%s", diff)
	}

	api.down = true
	_, err = a.Attest(context.Background(), "prod", "good")
	var refused *RefusedError
	if err == nil || errors.As(err, &refused) || !errors.Is(err, errDown) {
		t.Errorf("API server down: got %v, want its error, not a refusal", err)
	}
}

func TestNew(t *testing.T) {
	api := &fakeAPI{}
	tests := []struct {
		name     string
		clusters []Cluster
		wantErr  string
	}{
		{name: "no name", clusters: []Cluster{{Client: api, AllowList: []string{"a:b"}}}, wantErr: "needs a name"},
		{name: "name not a path segment", clusters: []Cluster{{Name: "a/b", Client: api, AllowList: []string{"a:b"}}}, wantErr: "cluster name"},
		{name: "twice", clusters: []Cluster{{Name: "a", Client: api, AllowList: []string{"a:b"}}, {Name: "a", Client: api, AllowList: []string{"a:b"}}}, wantErr: "configured twice"},
		{name: "empty allow list", clusters: []Cluster{{Name: "a", Client: api}}, wantErr: "service_account_allow_list is empty"},
		{name: "allow list item", clusters: []Cluster{{Name: "a", Client: api, AllowList: []string{"agent"}}}, wantErr: `"agent": want namespace:name`},
		{name: "no client", clusters: []Cluster{{Name: "a", AllowList: []string{"a:b"}}}, wantErr: "no API client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.clusters)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
