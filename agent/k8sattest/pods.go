package k8sattest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/kubeapi"
)

// API is the part of the Kubernetes API the pod view calls
// (kubeapi.Client implements it).
type API = kubeapi.PodSource

// Container is one running container of a pod on the node.
type Container struct {
	Pod   *kubeapi.Pod
	Name  string
	Image string
}

// PodsConfig configures a Pods view.
type PodsConfig struct {
	Client API
	// NodeName is the agent's node: only its pods are watched.
	NodeName string
	Backoff  backoff.Config
	Clock    clock.Clock
	Logger   *slog.Logger
}

// Pods is the agent's view of the pods bound to its node, indexed by
// container ID: a list, then a watch from the list's resource version
// (field selector spec.nodeName=<node>), listed again when the watch's
// version is too old. It is safe for concurrent use.
type Pods struct {
	cfg PodsConfig
	log *slog.Logger

	mu          sync.Mutex
	byContainer map[string]Container
	byPod       map[string][]string // pod uid -> its container IDs
	changed     chan struct{}       // closed (and replaced) on every change
}

// NewPods returns an empty view; Run fills it.
func NewPods(cfg PodsConfig) *Pods {
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pods{
		cfg:         cfg,
		log:         cfg.Logger.With(logkey.Component, "k8sattest", logkey.Node, cfg.NodeName),
		byContainer: map[string]Container{},
		byPod:       map[string][]string{},
		changed:     make(chan struct{}),
	}
}

// Run keeps the view current until ctx ends (then nil). API errors are
// retried with backoff; the view keeps what it last knew meanwhile.
func (p *Pods) Run(ctx context.Context) error {
	sel := kubeapi.NodeSelector(p.cfg.NodeName)
	b := backoff.New(p.cfg.Backoff)
	for ctx.Err() == nil {
		err := p.listAndWatch(ctx, sel, b)
		if ctx.Err() != nil {
			return nil
		}
		d := b.Next()
		p.log.Warn("watching the node's pods; retrying", logkey.Error, err, logkey.RetryIn, d)
		if err := backoff.Sleep(ctx, p.cfg.Clock, d); err != nil {
			return nil
		}
	}
	return nil
}

// listAndWatch keeps the view in step with the node's pods until the
// watch fails or cannot resume.
func (p *Pods) listAndWatch(ctx context.Context, sel string, b *backoff.Backoff) error {
	return kubeapi.ListWatchPods(ctx, p.cfg.Client, sel, kubeapi.PodHandler{
		Replace: p.replace,
		Event: func(ev kubeapi.PodEvent) {
			switch ev.Type {
			case kubeapi.EventAdded, kubeapi.EventModified:
				p.put(ev.Pod)
			case kubeapi.EventDeleted:
				p.remove(ev.Pod.Metadata.UID)
			}
		},
	}, func(n int) {
		b.Reset()
		p.log.Debug("pods listed", logkey.Pods, n)
	})
}

// replace sets the view to pods.
func (p *Pods) replace(pods []kubeapi.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.byContainer = map[string]Container{}
	p.byPod = map[string][]string{}
	for i := range pods {
		p.putLocked(&pods[i])
	}
	p.notifyLocked()
}

func (p *Pods) put(pod kubeapi.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLocked(pod.Metadata.UID)
	p.putLocked(&pod)
	p.notifyLocked()
}

func (p *Pods) remove(uid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLocked(uid)
	p.notifyLocked()
}

func (p *Pods) putLocked(pod *kubeapi.Pod) {
	images := map[string]string{}
	for _, c := range append(append([]kubeapi.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		images[c.Name] = c.Image
	}
	var ids []string
	for _, statuses := range [][]kubeapi.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, s := range statuses {
			id := ContainerIDFromStatus(s.ContainerID)
			if id == "" {
				continue // not started yet
			}
			image := images[s.Name]
			if image == "" {
				image = s.Image
			}
			p.byContainer[id] = Container{Pod: pod, Name: s.Name, Image: image}
			ids = append(ids, id)
		}
	}
	p.byPod[pod.Metadata.UID] = ids
}

func (p *Pods) removeLocked(uid string) {
	for _, id := range p.byPod[uid] {
		delete(p.byContainer, id)
	}
	delete(p.byPod, uid)
}

func (p *Pods) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// ErrUnknownContainer: no pod on the node has the container, even after
// waiting.
var ErrUnknownContainer = errors.New("no pod on this node runs the container")

// Lookup returns the container with id, waiting up to wait for it to
// appear (a pod that just started may not be in the view yet).
func (p *Pods) Lookup(ctx context.Context, id string, wait time.Duration) (Container, error) {
	timer := p.cfg.Clock.NewTimer(wait)
	defer timer.Stop()
	for {
		p.mu.Lock()
		c, ok := p.byContainer[id]
		changed := p.changed
		p.mu.Unlock()
		if ok {
			return c, nil
		}
		select {
		case <-changed:
		case <-timer.C():
			return Container{}, fmt.Errorf("k8sattest: container %s: %w (waited %s)", id, ErrUnknownContainer, wait)
		case <-ctx.Done():
			return Container{}, ctx.Err()
		}
	}
}
