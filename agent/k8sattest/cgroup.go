package k8sattest

import (
	"regexp"
	"strings"
	"sync"
)

// containerSegment matches the path segment that names a container in the
// cgroup paths of the Kubernetes runtimes, with the cgroupfs driver
// (".../pod<uid>/<id>") and the systemd one
// (".../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope",
// "crio-<id>.scope", "docker-<id>.scope"). CRI-O's "crio-conmon-<id>" is
// the monitor, not the container, and does not match.
var containerSegment = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:(?:cri-containerd|crio|docker|containerd)-)?([0-9a-f]{64})(?:\.scope)?$`)
})

// podSegment matches the segment naming the pod ("pod<uid>", with
// underscores for dashes under systemd). Both patterns are compiled on
// first use: agents without k8s workload attestation never need them.
var podSegment = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?:^|-)pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$`)
})

// Cgroup is what a process's cgroup paths say about its container.
type Cgroup struct {
	// ContainerID is the runtime's ID of the container (64 hex digits),
	// as in a pod's status after the "<runtime>://" prefix.
	ContainerID string
	// PodUID is the uid of the pod the cgroup path names, when it names
	// one (Kubernetes' cgroup layout); empty otherwise.
	PodUID string
}

// ParseCgroup reads the content of /proc/<pid>/cgroup (cgroup v1, one line
// per hierarchy "id:controllers:path", or v2, "0::path") and returns the
// container the process runs in. ok is false for a process in no
// container (on the host): it has no Kubernetes selectors. Lines that
// disagree about the container make ok false too: such a process cannot
// be told apart.
func ParseCgroup(content string) (c Cgroup, ok bool) {
	for line := range strings.SplitSeq(content, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		got, found := parsePath(parts[2])
		if !found {
			continue
		}
		if ok && got != c {
			return Cgroup{}, false
		}
		c, ok = got, true
	}
	return c, ok
}

// parsePath finds the container (the last segment that names one) and its
// pod in one cgroup path.
func parsePath(path string) (Cgroup, bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i := len(segs) - 1; i >= 0; i-- {
		m := containerSegment().FindStringSubmatch(segs[i])
		if m == nil {
			continue
		}
		c := Cgroup{ContainerID: m[1]}
		for j := i - 1; j >= 0; j-- {
			if p := podSegment().FindStringSubmatch(segs[j]); p != nil {
				c.PodUID = strings.ReplaceAll(p[1], "_", "-")
				break
			}
		}
		return c, true
	}
	return Cgroup{}, false
}

// ContainerIDFromStatus strips the runtime prefix of a pod status's
// container ID ("containerd://<id>" -> "<id>").
func ContainerIDFromStatus(s string) string {
	if _, id, ok := strings.Cut(s, "://"); ok {
		return id
	}
	return s
}
