package kubetest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The helpers below make one API call each as the cluster admin and fail the
// test on any error. Like t.Fatal, they must be called from the test's own
// goroutine.

// DefaultNamespace is where helpers put objects whose namespace is not given.
const DefaultNamespace = "default"

// tokenLifetime is the life of the tokens the helpers request: longer than
// any test, and above the API server's minimum of 10 minutes.
const tokenLifetime = time.Hour

// callCtx bounds one API call. Not the test's context: helpers may run in
// cleanups, after it is canceled.
func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// CreateNamespace creates a namespace. Nothing finalizes namespaces here (no
// controller manager), so one cannot be deleted for good.
func (c *Cluster) CreateNamespace(t testing.TB, name string) *corev1.Namespace {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: creating namespace %s: %v", name, err)
	}
	return ns
}

// CreateNode creates a node with the given labels. Its uid is the server's.
func (c *Cluster) CreateNode(t testing.TB, name string, labels map[string]string) *corev1.Node {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	node, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: creating node %s: %v", name, err)
	}
	return node
}

// CreateServiceAccount creates a service account in namespace ns ("" means
// DefaultNamespace).
func (c *Cluster) CreateServiceAccount(t testing.TB, ns, name string) *corev1.ServiceAccount {
	t.Helper()
	ns = orDefault(ns)
	ctx, cancel := callCtx()
	defer cancel()
	sa, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: creating service account %s/%s: %v", ns, name, err)
	}
	return sa
}

// PodParams describe a pod for CreatePod.
type PodParams struct {
	// Namespace defaults to DefaultNamespace.
	Namespace string
	Name      string
	// NodeName is spec.nodeName: the pod is bound to that node as if
	// scheduled there. Empty leaves it unscheduled.
	NodeName string
	// ServiceAccount must exist (the ServiceAccount admission plugin
	// refuses the pod otherwise). Empty means "default", which no
	// controller creates here.
	ServiceAccount string
	Labels         map[string]string
	// Containers default to one named "app" with image
	// "registry.example/app:1". Nothing pulls or runs them.
	Containers []Container
}

// Container is a container of a pod made by CreatePod.
type Container struct {
	Name  string
	Image string
}

// CreatePod creates a pod. The API server gives it a uid; its status stays
// empty (Pending) until SetContainerStatuses.
func (c *Cluster) CreatePod(t testing.TB, p PodParams) *corev1.Pod {
	t.Helper()
	ns := orDefault(p.Namespace)
	containers := p.Containers
	if len(containers) == 0 {
		containers = []Container{{Name: "app", Image: "registry.example/app:1"}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p.Name, Labels: p.Labels},
		Spec: corev1.PodSpec{
			NodeName:           p.NodeName,
			ServiceAccountName: p.ServiceAccount,
		},
	}
	for _, ctr := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: ctr.Name, Image: ctr.Image})
	}
	ctx, cancel := callCtx()
	defer cancel()
	created, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: creating pod %s/%s: %v", ns, p.Name, err)
	}
	return created
}

// SetContainerStatuses reports the pod's containers as running with the
// given container IDs (container name to ID as a kubelet reports it, such
// as "containerd://<64 hex digits>"), through the status subresource as a
// kubelet does, and returns the updated pod. Every container of the pod
// must be named.
func (c *Cluster) SetContainerStatuses(t testing.TB, pod *corev1.Pod, containerIDs map[string]string) *corev1.Pod {
	t.Helper()
	if len(containerIDs) != len(pod.Spec.Containers) {
		t.Fatalf("kubetest: pod %s/%s has %d containers; %d container IDs given", pod.Namespace, pod.Name, len(pod.Spec.Containers), len(containerIDs))
	}
	ctx, cancel := callCtx()
	defer cancel()
	current, err := c.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kubetest: getting pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	now := metav1.Now()
	current.Status.Phase = corev1.PodRunning
	current.Status.StartTime = &now
	current.Status.ContainerStatuses = nil
	started := true
	for _, ctr := range current.Spec.Containers {
		id, ok := containerIDs[ctr.Name]
		if !ok {
			t.Fatalf("kubetest: no container ID given for container %q of pod %s/%s", ctr.Name, pod.Namespace, pod.Name)
		}
		current.Status.ContainerStatuses = append(current.Status.ContainerStatuses, corev1.ContainerStatus{
			Name:        ctr.Name,
			Image:       ctr.Image,
			ImageID:     ctr.Image,
			ContainerID: id,
			Ready:       true,
			Started:     &started,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	updated, err := c.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, current, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("kubetest: setting the container statuses of pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return updated
}

// DeletePod deletes a pod at once, as a kubelet does once its containers
// have stopped: a pod bound to a node and deleted with a grace period would
// otherwise wait for a kubelet that never comes.
func (c *Cluster) DeletePod(t testing.TB, pod *corev1.Pod) {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	zero := int64(0)
	err := c.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil {
		t.Fatalf("kubetest: deleting pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// PodToken returns a token of the pod's service account bound to the pod
// (a TokenRequest with boundObjectRef), for the given audiences, valid for
// an hour or until the pod is deleted. It is what a projected service
// account token volume gives the pod. Its TokenReview names the pod and
// its node (user extras authentication.kubernetes.io/pod-name, pod-uid,
// node-name, node-uid).
func (c *Cluster) PodToken(t testing.TB, pod *corev1.Pod, audiences ...string) string {
	t.Helper()
	sa := pod.Spec.ServiceAccountName
	return c.requestToken(t, pod.Namespace, sa, audiences, &authenticationv1.BoundObjectReference{
		Kind:       "Pod",
		APIVersion: "v1",
		Name:       pod.Name,
		UID:        pod.UID,
	})
}

// ServiceAccountToken returns a token of the service account, bound to no
// object, for the given audiences (none: APIAudience, which the API server
// itself accepts), valid for an hour.
func (c *Cluster) ServiceAccountToken(t testing.TB, ns, name string, audiences ...string) string {
	t.Helper()
	return c.requestToken(t, orDefault(ns), name, audiences, nil)
}

func (c *Cluster) requestToken(t testing.TB, ns, sa string, audiences []string, bound *authenticationv1.BoundObjectReference) string {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	seconds := int64(tokenLifetime / time.Second)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         audiences,
			ExpirationSeconds: &seconds,
			BoundObjectRef:    bound,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: requesting a token for service account %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates to the
// cluster as the service account (with a token from ServiceAccountToken)
// and returns its path. The account can do only what BindClusterRole and
// the default roles grant it.
func (c *Cluster) ServiceAccountKubeconfig(t testing.TB, ns, name string) string {
	t.Helper()
	ns = orDefault(ns)
	path := filepath.Join(c.dir, fmt.Sprintf("sa-%s-%s.kubeconfig", ns, name))
	c.writeKubeconfig(t, path, &clientcmdapi.AuthInfo{Token: c.ServiceAccountToken(t, ns, name)})
	return path
}

// BindClusterRole creates a cluster role named name with the given rules
// and binds it to service account ns/sa across the cluster. The RBAC
// authorizer sees the binding a moment later: callers poll.
func (c *Cluster) BindClusterRole(t testing.TB, name, ns, sa string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ns = orDefault(ns)
	ctx, cancel := callCtx()
	defer cancel()
	rbac := c.Client.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      rules,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: creating cluster role %s: %v", name, err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: binding cluster role %s to %s/%s: %v", name, ns, sa, err)
	}
}

// ReviewToken runs a TokenReview of token for the given audiences as the
// cluster admin and returns its status.
func (c *Cluster) ReviewToken(t testing.TB, token string, audiences ...string) authenticationv1.TokenReviewStatus {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	r, err := c.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: reviewing a token: %v", err)
	}
	return r.Status
}

func orDefault(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}
