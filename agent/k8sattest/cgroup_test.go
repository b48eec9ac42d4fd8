package k8sattest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	id1    = "8d7c1f3b5a4e2c6d9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60"
	id2    = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	podUID = "3e2d1c0b-aaaa-4bbb-8ccc-0123456789ab"
)

// Real-world /proc/<pid>/cgroup contents, from the runtimes and cgroup
// drivers Kubernetes nodes use.
func TestParseCgroup(t *testing.T) {
	podUnderscore := strings.ReplaceAll(podUID, "-", "_")
	tests := []struct {
		name    string
		content string
		want    Cgroup
		wantOK  bool
	}{
		{
			name:    "cgroup v2, containerd, systemd driver",
			content: "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUnderscore + ".slice/cri-containerd-" + id1 + ".scope\n",
			want:    Cgroup{ContainerID: id1, PodUID: podUID}, wantOK: true,
		},
		{
			name:    "cgroup v2, CRI-O, systemd driver",
			content: "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUnderscore + ".slice/crio-" + id1 + ".scope\n",
			want:    Cgroup{ContainerID: id1, PodUID: podUID}, wantOK: true,
		},
		{
			name:    "cgroup v2, guaranteed pod (no QoS slice), containerd",
			content: "0::/kubepods.slice/kubepods-pod" + podUnderscore + ".slice/cri-containerd-" + id1 + ".scope",
			want:    Cgroup{ContainerID: id1, PodUID: podUID}, wantOK: true,
		},
		{
			name:    "cgroup v2, containerd, cgroupfs driver",
			content: "0::/kubepods/burstable/pod" + podUID + "/" + id1 + "\n",
			want:    Cgroup{ContainerID: id1, PodUID: podUID}, wantOK: true,
		},
		{
			name: "cgroup v1, containerd, cgroupfs driver",
			content: "12:memory:/kubepods/besteffort/pod" + podUID + "/" + id1 + "\n" +
				"11:cpu,cpuacct:/kubepods/besteffort/pod" + podUID + "/" + id1 + "\n" +
				"1:name=systemd:/kubepods/besteffort/pod" + podUID + "/" + id1 + "\n",
			want: Cgroup{ContainerID: id1, PodUID: podUID}, wantOK: true,
		},
		{
			name: "cgroup v1, Docker (dockershim), systemd driver",
			content: "11:devices:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUnderscore + ".slice/docker-" + id1 + ".scope\n" +
				"0::/\n",
			want: Cgroup{ContainerID: id1, PodUID: podUID}, wantOK: true,
		},
		{
			name:    "cgroup v1, plain Docker (no pod)",
			content: "12:pids:/docker/" + id1 + "\n5:memory:/docker/" + id1 + "\n",
			want:    Cgroup{ContainerID: id1}, wantOK: true,
		},
		{
			name:    "cgroup v1, CRI-O, cgroupfs driver",
			content: "4:memory:/kubepods/burstable/pod" + podUID + "/crio-" + id1 + "\n",
			want:    Cgroup{ContainerID: id1, PodUID: podUID}, wantOK: true,
		},
		{
			name:    "CRI-O's conmon is no container",
			content: "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUnderscore + ".slice/crio-conmon-" + id1 + ".scope\n",
			wantOK:  false,
		},
		{
			name:    "host process, cgroup v2",
			content: "0::/user.slice/user-1000.slice/session-3.scope\n",
			wantOK:  false,
		},
		{
			name:    "host process, cgroup v1 systemd service",
			content: "12:memory:/system.slice/containerd.service\n1:name=systemd:/system.slice/containerd.service\n",
			wantOK:  false,
		},
		{
			name:    "kubepods sandbox slice without a container",
			content: "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUnderscore + ".slice\n",
			wantOK:  false,
		},
		{
			name:    "hierarchies naming different containers",
			content: "12:memory:/docker/" + id1 + "\n11:cpu:/docker/" + id2 + "\n",
			wantOK:  false,
		},
		{name: "empty", content: "", wantOK: false},
		{name: "garbage", content: "not a cgroup file\n::\n", wantOK: false},
		{
			name:    "63 hex digits is no container ID",
			content: "0::/kubepods/burstable/pod" + podUID + "/" + id1[:63] + "\n",
			wantOK:  false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseCgroup(tt.content)
			if ok != tt.wantOK {
				t.Fatalf("ParseCgroup ok = %v, want %v (got %+v)", ok, tt.wantOK, got)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCgroup (-want +got):\n%s", diff)
			}
		})
	}
}

func TestContainerIDFromStatus(t *testing.T) {
	for in, want := range map[string]string{
		"containerd://" + id1: id1,
		"cri-o://" + id1:      id1,
		"docker://" + id1:     id1,
		id1:                   id1,
	} {
		if got := ContainerIDFromStatus(in); got != want {
			t.Errorf("ContainerIDFromStatus(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseCgroup(f *testing.F) {
	f.Add("0::/kubepods.slice/kubepods-pod" + podUID + ".slice/cri-containerd-" + id1 + ".scope")
	f.Add("12:memory:/docker/" + id1)
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseCgroup(s)
		if ok && len(c.ContainerID) != 64 {
			t.Fatalf("container ID %q is not 64 hex digits", c.ContainerID)
		}
	})
}
