package k8sattest

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/internal/kubeapi"
)

// fakeAPI is a hand-written API: a list, then the events a test sends.
type fakeAPI struct {
	mu     sync.Mutex
	pods   []kubeapi.Pod
	events chan kubeapi.PodEvent
	lists  int
}

func (f *fakeAPI) ListPods(_ context.Context, sel string) (*kubeapi.PodList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	l := &kubeapi.PodList{Items: append([]kubeapi.Pod(nil), f.pods...)}
	l.Metadata.ResourceVersion = "1"
	return l, nil
}

func (f *fakeAPI) WatchPods(ctx context.Context, sel, rv string, fn func(kubeapi.PodEvent) error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-f.events:
			if ev.Type == kubeapi.EventError {
				return &kubeapi.APIError{Code: ev.Status.Code, Status: *ev.Status}
			}
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
}

func pod(name, uid string, containers map[string]string) kubeapi.Pod {
	p := kubeapi.Pod{
		Metadata: kubeapi.ObjectMeta{Namespace: "default", Name: name, UID: uid, Labels: map[string]string{"app": name}},
		Spec:     kubeapi.PodSpec{NodeName: "node-a", ServiceAccountName: "web"},
	}
	for cname, id := range containers {
		p.Spec.Containers = append(p.Spec.Containers, kubeapi.Container{Name: cname, Image: "registry.example/" + cname + ":1"})
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, kubeapi.ContainerStatus{Name: cname, ContainerID: "containerd://" + id})
	}
	return p
}

func startPods(t *testing.T, api *fakeAPI) *Pods {
	t.Helper()
	p := NewPods(PodsConfig{Client: api, NodeName: "node-a"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p
}

// TestPodsLookup: a container listed at start is found; one whose pod comes
// later (a pod that just started) is waited for; a deleted pod's container
// is not found; a watch too old (410 Gone) lists again.
func TestPodsLookup(t *testing.T) {
	api := &fakeAPI{pods: []kubeapi.Pod{pod("web-1", "uid-1", map[string]string{"app": id1})}, events: make(chan kubeapi.PodEvent)}
	p := startPods(t, api)
	ctx := context.Background()

	c, err := p.Lookup(ctx, id1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"k8s:container-image:registry.example/app:1", "k8s:container-name:app", "k8s:node-name:node-a",
		"k8s:ns:default", "k8s:pod-label:app:web-1", "k8s:pod-name:web-1", "k8s:pod-uid:uid-1", "k8s:sa:web",
	}
	if diff := cmp.Diff(want, ContainerSelectors(c)); diff != "" {
		t.Errorf("selectors (-want +got):\n%s", diff)
	}

	// The lookup starts before the pod's event arrives.
	got := make(chan error, 1)
	go func() {
		_, err := p.Lookup(ctx, id2, 5*time.Second)
		got <- err
	}()
	api.events <- kubeapi.PodEvent{Type: kubeapi.EventAdded, Pod: pod("web-2", "uid-2", map[string]string{"app": id2})}
	if err := <-got; err != nil {
		t.Fatalf("lookup of a container whose pod arrived while waiting: %v", err)
	}

	api.events <- kubeapi.PodEvent{Type: kubeapi.EventDeleted, Pod: pod("web-1", "uid-1", nil)}
	// The event is applied just after the watch takes it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := p.Lookup(ctx, id1, 10*time.Millisecond)
		if errors.Is(err, ErrUnknownContainer) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookup of a deleted pod's container: %v, want ErrUnknownContainer", err)
		}
	}

	api.mu.Lock()
	api.pods = []kubeapi.Pod{pod("web-3", "uid-3", map[string]string{"app": id1})}
	api.mu.Unlock()
	api.events <- kubeapi.PodEvent{Type: kubeapi.EventError, Status: &kubeapi.Status{Code: 410, Reason: "Expired"}}
	c, err = p.Lookup(ctx, id1, 5*time.Second)
	if err != nil {
		t.Fatalf("lookup after the relist: %v", err)
	}
	if c.Pod.Metadata.Name != "web-3" {
		t.Errorf("after the relist, container %s is in pod %s, want web-3", id1, c.Pod.Metadata.Name)
	}
	if _, err := p.Lookup(ctx, id2, 50*time.Millisecond); !errors.Is(err, ErrUnknownContainer) {
		t.Errorf("after the relist, a pod gone meanwhile still has its container: %v", err)
	}
}

// TestSelectors runs the attestor on cgroup files under a test proc root.
func TestSelectors(t *testing.T) {
	api := &fakeAPI{pods: []kubeapi.Pod{pod("web-1", podUID, map[string]string{"app": id1})}, events: make(chan kubeapi.PodEvent)}
	p := startPods(t, api)
	root := t.TempDir()
	write := func(pid, content string) {
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	under := strings.ReplaceAll(podUID, "-", "_")
	write("10", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+under+".slice/cri-containerd-"+id1+".scope\n")
	write("11", "0::/user.slice/user-1000.slice/session-3.scope\n")
	write("12", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+under+".slice/cri-containerd-"+id2+".scope\n")
	write("13", "0::/kubepods.slice/kubepods-pod00000000_0000_0000_0000_000000000000.slice/cri-containerd-"+id1+".scope\n")
	a := New(Config{Pods: p, ProcRoot: root, Wait: 50 * time.Millisecond})
	tests := []struct {
		name string
		pid  int32
		want []string
	}{
		{name: "container of a pod on the node", pid: 10, want: []string{
			"k8s:container-image:registry.example/app:1", "k8s:container-name:app", "k8s:node-name:node-a",
			"k8s:ns:default", "k8s:pod-label:app:web-1", "k8s:pod-name:web-1", "k8s:pod-uid:" + podUID, "k8s:sa:web",
		}},
		{name: "host process", pid: 11},
		{name: "container of no pod on the node", pid: 12},
		{name: "cgroup names another pod", pid: 13},
		{name: "process gone", pid: 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Selectors(context.Background(), tt.pid)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("selectors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNodeNameFromToken(t *testing.T) {
	jwt := func(payload string) string {
		return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
	}
	tests := []struct {
		name, token, want, wantErr string
	}{
		{name: "projected token", token: jwt(`{"kubernetes.io":{"namespace":"signet","node":{"name":"node-a","uid":"u"},"pod":{"name":"agent-1"}}}`), want: "node-a"},
		{name: "no node claim", token: jwt(`{"kubernetes.io":{"namespace":"signet"}}`), wantErr: "names no node"},
		{name: "not a JWT", token: "abc", wantErr: "not a JWT"},
		{name: "bad payload", token: "a.!!.c", wantErr: "payload"},
		{name: "payload not JSON", token: jwt("nope"), wantErr: "claims"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NodeNameFromToken(tt.token)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("node %q, want %q", got, tt.want)
			}
		})
	}
}
