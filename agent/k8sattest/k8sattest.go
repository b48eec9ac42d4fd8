package k8sattest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/signet-mesh/signet/agent/internal/logkey"
)

// Selector types this attestor produces.
const (
	SelectorNamespace      = "k8s:ns:"
	SelectorServiceAccount = "k8s:sa:"
	SelectorPodName        = "k8s:pod-name:"
	SelectorPodUID         = "k8s:pod-uid:"
	SelectorPodLabel       = "k8s:pod-label:"
	SelectorContainerName  = "k8s:container-name:"
	SelectorContainerImage = "k8s:container-image:"
	SelectorNodeName       = "k8s:node-name:"
)

// DefaultWait is how long Selectors waits for a container missing from the
// pod view: a pod that has just started reaches the API server, then the
// agent's watch, a moment after its process may already call.
const DefaultWait = 10 * time.Second

// maxCgroupBytes bounds what is read of /proc/<pid>/cgroup.
const maxCgroupBytes = 64 << 10

// Config configures an Attestor.
type Config struct {
	Pods *Pods
	// ProcRoot is where each process's cgroup file is read
	// (<ProcRoot>/<pid>/cgroup); empty means "/proc".
	ProcRoot string
	// Wait bounds the wait for a container the view does not hold yet;
	// zero means DefaultWait.
	Wait   time.Duration
	Logger *slog.Logger
}

// Attestor gives Kubernetes selectors to processes in the containers of
// the node's pods. It is safe for concurrent use.
type Attestor struct {
	cfg Config
	log *slog.Logger
}

// New returns an Attestor with cfg's zero fields defaulted.
func New(cfg Config) *Attestor {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.Wait == 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Attestor{cfg: cfg, log: cfg.Logger.With(logkey.Component, "k8sattest")}
}

// Selectors returns the Kubernetes selectors of process pid: none for a
// process in no container, or in a container no pod of the node runs
// (leaving selectors out can only grant less). The caller (agent/attestor)
// checks that pid still names the process that connected after this
// returns, so a PID reused meanwhile gets nothing.
func (a *Attestor) Selectors(ctx context.Context, pid int32) ([]string, error) {
	content, err := readLimited(filepath.Join(a.cfg.ProcRoot, strconv.Itoa(int(pid)), "cgroup"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // gone: the caller's liveness check says so
	}
	if err != nil {
		return nil, fmt.Errorf("k8sattest: reading the cgroup of %d: %w", pid, err)
	}
	cg, ok := ParseCgroup(content)
	if !ok {
		return nil, nil
	}
	c, err := a.cfg.Pods.Lookup(ctx, cg.ContainerID, a.cfg.Wait)
	if errors.Is(err, ErrUnknownContainer) {
		a.log.Info("process in a container of no pod on this node: no k8s selectors", logkey.PID, pid, logkey.ContainerID, cg.ContainerID)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if cg.PodUID != "" && cg.PodUID != c.Pod.Metadata.UID {
		a.log.Warn("the container's cgroup names another pod than the API server does: no k8s selectors", logkey.PID, pid,
			logkey.ContainerID, cg.ContainerID, logkey.Pod, c.Pod.Metadata.Namespace+"/"+c.Pod.Metadata.Name)
		return nil, nil
	}
	return ContainerSelectors(c), nil
}

// ContainerSelectors are the selectors of a container of a pod, sorted.
func ContainerSelectors(c Container) []string {
	pod := c.Pod
	out := []string{
		SelectorNamespace + pod.Metadata.Namespace,
		SelectorServiceAccount + pod.Spec.ServiceAccountName,
		SelectorPodName + pod.Metadata.Name,
		SelectorPodUID + pod.Metadata.UID,
		SelectorContainerName + c.Name,
		SelectorNodeName + pod.Spec.NodeName,
	}
	if c.Image != "" {
		out = append(out, SelectorContainerImage+c.Image)
	}
	for k, v := range pod.Metadata.Labels {
		out = append(out, SelectorPodLabel+k+":"+v)
	}
	slices.Sort(out)
	return out
}

func readLimited(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCgroupBytes))
	return string(b), err
}

// NodeNameFromToken returns the node a projected service account token
// was issued on (its kubernetes.io.node.name claim). The token is not
// verified: the agent reads its own token only to learn which node's pods
// to watch; the CA verifies it.
func NodeNameFromToken(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("k8sattest: the service account token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("k8sattest: the service account token's payload: %w", err)
	}
	var claims struct {
		Kubernetes struct {
			Node struct {
				Name string `json:"name"`
			} `json:"node"`
		} `json:"kubernetes.io"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", fmt.Errorf("k8sattest: the service account token's claims: %w", err)
	}
	if claims.Kubernetes.Node.Name == "" {
		return "", errors.New("k8sattest: the service account token names no node (is it a projected token of a pod?): give the node name")
	}
	return claims.Kubernetes.Node.Name, nil
}
