package kube

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/signet-mesh/signet/test/kube/kubetest"
)

// The user extras of a TokenReview that name the pod a token is bound to and
// the pod's node: what k8s_psat node attestation takes the node from.
const (
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraPodUID   = "authentication.kubernetes.io/pod-uid"
	extraNodeName = "authentication.kubernetes.io/node-name"
	extraNodeUID  = "authentication.kubernetes.io/node-uid"
)

// deadline bounds every wait for the API server to catch up with a change.
const deadline = 30 * time.Second

// TestPodBoundToken checks the API server behaviour k8s_psat attestation
// relies on: a token bound to a pod is reviewed as that pod's service
// account on that pod's node, for its audience only, and is refused once the
// pod is deleted. The review runs with a service account that may create
// token reviews and nothing else, as signet's CA will.
func TestPodBoundToken(t *testing.T) {
	c := kubetest.Start(t)
	node := c.CreateNode(t, "node-a", map[string]string{"topology.kubernetes.io/zone": "zone-a"})
	c.CreateNamespace(t, "signet")
	sa := c.CreateServiceAccount(t, "signet", "agent")
	pod := c.CreatePod(t, kubetest.PodParams{
		Namespace:      "signet",
		Name:           "agent-1",
		NodeName:       node.Name,
		ServiceAccount: "agent",
	})
	token := c.PodToken(t, pod, "signet")

	c.CreateServiceAccount(t, "signet", "server")
	reviewer := clientFor(t, c.ServiceAccountKubeconfig(t, "signet", "server"))
	if _, err := review(reviewer, token, "signet"); !apierrors.IsForbidden(err) {
		t.Fatalf("token review by a service account without the role: got error %v, want Forbidden", err)
	}
	c.BindClusterRole(t, "signet-server", "signet", "server", rbacv1.PolicyRule{
		APIGroups: []string{"authentication.k8s.io"},
		Resources: []string{"tokenreviews"},
		Verbs:     []string{"create"},
	})
	var got authenticationv1.TokenReviewStatus
	poll(t, "the token review allowed by the new role binding", func() error {
		var err error
		got, err = review(reviewer, token, "signet")
		return err
	})

	want := authenticationv1.TokenReviewStatus{
		Authenticated: true,
		User: authenticationv1.UserInfo{
			Username: "system:serviceaccount:signet:agent",
			UID:      string(sa.UID),
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:signet", "system:authenticated"},
			Extra: map[string]authenticationv1.ExtraValue{
				extraPodName:  {pod.Name},
				extraPodUID:   {string(pod.UID)},
				extraNodeName: {node.Name},
				extraNodeUID:  {string(node.UID)},
			},
		},
		Audiences: []string{"signet"},
	}
	// The extras also carry the token's own id, which differs every time.
	delete(got.User.Extra, "authentication.kubernetes.io/credential-id")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("review of the pod-bound token (-want +got):\n%s", diff)
	}

	tests := []struct {
		name      string
		audiences []string
	}{
		{name: "wrong audience", audiences: []string{"not-signet"}},
		{name: "API server audience", audiences: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := review(reviewer, token, tt.audiences...)
			if err != nil {
				t.Fatal(err)
			}
			if st.Authenticated {
				t.Errorf("token for audience signet reviewed for %q: authenticated as %s, want refused", tt.audiences, st.User.Username)
			}
		})
	}

	// The API server caches the successful reviews above for 10 s: the
	// token is refused once that runs out.
	c.DeletePod(t, pod)
	start := time.Now()
	poll(t, "the deleted pod's token to be refused", func() error {
		st, err := review(reviewer, token, "signet")
		if err != nil {
			return err
		}
		if st.Authenticated {
			return errors.New("still authenticated")
		}
		return nil
	})
	t.Logf("token refused %s after its pod was deleted", time.Since(start).Round(time.Millisecond))
}

// TestPodsOnNode checks what the agent's workload attestation relies on: a
// service account allowed to list and watch pods sees, with the field
// selector spec.nodeName, the pods of its node only, including their
// container IDs once reported.
func TestPodsOnNode(t *testing.T) {
	c := kubetest.Start(t)
	for _, n := range []string{"node-a", "node-b"} {
		c.CreateNode(t, n, nil)
	}
	c.CreateServiceAccount(t, "", "app")
	c.CreateServiceAccount(t, "", "agent")
	c.BindClusterRole(t, "signet-agent", "", "agent", rbacv1.PolicyRule{
		APIGroups: []string{""},
		Resources: []string{"pods"},
		Verbs:     []string{"get", "list", "watch"},
	})
	agent := clientFor(t, c.ServiceAccountKubeconfig(t, "", "agent"))
	onA := c.CreatePod(t, kubetest.PodParams{Name: "a-1", NodeName: "node-a", ServiceAccount: "app"})
	c.CreatePod(t, kubetest.PodParams{Name: "b-1", NodeName: "node-b", ServiceAccount: "app"})

	selector := fields.OneTermEqualSelector("spec.nodeName", "node-a").String()
	var list *corev1.PodList
	poll(t, "the agent's pod list allowed by the new role binding", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		var err error
		list, err = agent.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: selector})
		return err
	})
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{onA.Name}, names); diff != "" {
		t.Errorf("pods listed on node-a (-want +got):\n%s", diff)
	}

	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	w, err := agent.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{
		FieldSelector:   selector,
		ResourceVersion: list.ResourceVersion,
	})
	if err != nil {
		t.Fatalf("watching pods on node-a: %v", err)
	}
	defer w.Stop()
	// The pod on node-b comes first: the watch delivers in order, so if its
	// first event is the node-a pod, the node-b one was filtered out.
	c.CreatePod(t, kubetest.PodParams{Name: "b-2", NodeName: "node-b", ServiceAccount: "app"})
	a2 := c.CreatePod(t, kubetest.PodParams{
		Name: "a-2", NodeName: "node-a", ServiceAccount: "app",
		Containers: []kubetest.Container{{Name: "app", Image: "registry.example/app:1"}, {Name: "envoy", Image: "registry.example/envoy:1"}},
	})
	ids := map[string]string{
		"app":   "containerd://" + hex64('a'),
		"envoy": "containerd://" + hex64('e'),
	}
	c.SetContainerStatuses(t, a2, ids)

	added := next(t, w)
	if added.Type != watch.Added || added.Pod.Name != "a-2" {
		t.Fatalf("first watch event: %s %s, want ADDED a-2", added.Type, added.Pod.Name)
	}
	modified := next(t, w)
	if modified.Type != watch.Modified || modified.Pod.Name != "a-2" {
		t.Fatalf("second watch event: %s %s, want MODIFIED a-2", modified.Type, modified.Pod.Name)
	}
	gotIDs := map[string]string{}
	for _, s := range modified.Pod.Status.ContainerStatuses {
		gotIDs[s.Name] = s.ContainerID
	}
	if diff := cmp.Diff(ids, gotIDs); diff != "" {
		t.Errorf("container IDs seen by the watch (-want +got):\n%s", diff)
	}
}

type podEvent struct {
	Type watch.EventType
	Pod  *corev1.Pod
}

// next returns the watch's next event, failing the test after deadline.
func next(t *testing.T, w watch.Interface) podEvent {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("the pod watch ended")
		}
		pod, ok := ev.Object.(*corev1.Pod)
		if !ok {
			t.Fatalf("pod watch event %s carries a %T", ev.Type, ev.Object)
		}
		return podEvent{ev.Type, pod}
	case <-time.After(deadline):
		t.Fatalf("no pod watch event within %s", deadline)
	}
	return podEvent{}
}

func hex64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func clientFor(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("loading %s: %v", kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func review(client kubernetes.Interface, token string, audiences ...string) (authenticationv1.TokenReviewStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	r, err := client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.TokenReviewStatus{}, err
	}
	return r.Status, nil
}

// poll calls f until it returns nil, failing the test with its last error
// after deadline.
func poll(t *testing.T, what string, f func() error) {
	t.Helper()
	stop := time.Now().Add(deadline)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(stop) {
			t.Fatalf("waiting for %s: still %v after %s", what, err, deadline)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
