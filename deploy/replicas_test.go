package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// etcdServerConfig is what the replica deployments must set in the
// server's configuration.
type etcdServerConfig struct {
	Store             string   `json:"store"`
	EtcdEndpoints     []string `json:"etcd_endpoints"`
	EtcdCA            string   `json:"etcd_ca"`
	EtcdCert          string   `json:"etcd_cert"`
	EtcdKey           string   `json:"etcd_key"`
	KeyPassphraseFile string   `json:"key_passphrase_file"`
	ServerName        string   `json:"server_name"`
}

func (c etcdServerConfig) check(t *testing.T) {
	t.Helper()
	if c.Store != "etcd" {
		t.Errorf("store: %q, want etcd", c.Store)
	}
	if len(c.EtcdEndpoints) != 3 {
		t.Errorf("etcd_endpoints %v: want the three members of the etcd cluster", c.EtcdEndpoints)
	}
	for _, e := range c.EtcdEndpoints {
		if !strings.HasPrefix(e, "https://") {
			t.Errorf("etcd endpoint %s: want https (the CA's state, root key included, crosses the network)", e)
		}
	}
	if c.EtcdCA == "" || c.EtcdCert == "" || c.EtcdKey == "" {
		t.Errorf("etcd_ca, etcd_cert and etcd_key must all be set (client certificate authentication): %q %q %q", c.EtcdCA, c.EtcdCert, c.EtcdKey)
	}
	if c.ServerName != "" {
		t.Errorf("server_name %q in a configuration shared by every replica: each needs its own", c.ServerName)
	}
}

// TestKubernetesReplicas: kubernetes/replicas deploys the CA as a
// three-replica StatefulSet on etcd: strictly decoded, hardened as the
// one-replica CA (workload.check), each replica named after its pod, the
// etcd client secret mounted where the configuration reads it, and the
// Service the agents of ../agent.yaml connect to is there.
func TestKubernetesReplicas(t *testing.T) {
	all := manifests(t, "kubernetes/replicas")
	defined := map[string]bool{}
	var (
		sts  *appsv1.StatefulSet
		file string
		cfg  etcdServerConfig
	)
	for f, objs := range all {
		for _, obj := range objs {
			switch o := obj.(type) {
			case *corev1.ConfigMap:
				defined["ConfigMap/"+o.Name] = true
				// signet's own loader checks it in cmd/signet
				// (TestConfigExamples); here, what the pod must match.
				if data, ok := o.Data["server.yaml"]; ok {
					if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
						t.Fatalf("%s: ConfigMap %s server.yaml: %v", f, o.Name, err)
					}
				}
			case *corev1.Secret:
				defined["Secret/"+o.Name] = true
			case *corev1.ServiceAccount:
				defined["ServiceAccount/"+o.Name] = true
			case *corev1.Service:
				defined["Service/"+o.Name] = true
			case *appsv1.StatefulSet:
				if sts != nil {
					t.Fatalf("%s: a second StatefulSet %s; want the CA's only", f, o.Name)
				}
				sts, file = o, f
				for _, v := range o.Spec.VolumeClaimTemplates {
					defined["PVC/"+v.Name] = true
				}
			case *appsv1.DaemonSet:
				t.Errorf("%s: DaemonSet %s: the agents are ../agent.yaml's", f, o.Name)
			}
		}
	}
	if sts == nil {
		t.Fatal("no StatefulSet: the CA replicas are missing")
	}
	cfg.check(t)
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Errorf("%s: StatefulSet %s replicas %v, want 3", file, sts.Name, sts.Spec.Replicas)
	}
	if len(sts.Spec.VolumeClaimTemplates) == 0 {
		t.Errorf("%s: no PVC: each replica keeps its own intermediate key", file)
	}
	if !defined["Service/"+sts.Spec.ServiceName] {
		t.Errorf("%s: serviceName %s is not defined", file, sts.Spec.ServiceName)
	}
	w := workload{file: file, kind: "StatefulSet", name: sts.Name, selector: sts.Spec.Selector.MatchLabels, pod: sts.Spec.Template}
	t.Run("StatefulSet/"+sts.Name, func(t *testing.T) { w.check(t, defined) })

	c := sts.Spec.Template.Spec.Containers[0]
	// --server-name $(POD_NAME), POD_NAME the pod's name.
	if i := slices.Index(c.Args, "--server-name"); i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != "$(POD_NAME)" {
		t.Errorf("container %s: args %v, want --server-name $(POD_NAME)", c.Name, c.Args)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		t.Errorf("container %s: no POD_NAME from metadata.name", c.Name)
	}
	// Every file the configuration names is on a mount of the volume
	// that holds it.
	secretOf := map[string]string{}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secretOf[v.Name] = v.Secret.SecretName
		}
	}
	for _, f := range []struct{ path, secret string }{
		{cfg.EtcdCA, "signet-etcd-client"}, {cfg.EtcdCert, "signet-etcd-client"}, {cfg.EtcdKey, "signet-etcd-client"},
		{cfg.KeyPassphraseFile, "signet-server-passphrase"},
	} {
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return strings.HasPrefix(f.path, m.MountPath+"/") && secretOf[m.Name] == f.secret
		}) {
			t.Errorf("container %s: %s is not on a mount of Secret %s", c.Name, f.path, f.secret)
		}
	}
	// The agents of ../agent.yaml reach this CA through its Service.
	agent, err := os.ReadFile("kubernetes/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, addr, ok := strings.Cut(string(agent), "server_address: ")
	host, _, _ := strings.Cut(strings.TrimSpace(strings.SplitN(addr, "\n", 2)[0]), ".")
	if !ok || !defined["Service/"+host] {
		t.Errorf("../agent.yaml connects to Service %q, which kubernetes/replicas does not define", host)
	}
}

// TestSystemdReplicaUnits: systemd/replicas holds the unit of the three CA
// machines, hardened as systemd/signet-server.service, naming each replica
// after its host, and the etcd configuration it loads.
func TestSystemdReplicaUnits(t *testing.T) {
	data, err := os.ReadFile("systemd/replicas/signet-server.service")
	if err != nil {
		t.Fatal(err)
	}
	unit, err := parseUnit(data)
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile("systemd/signet-server.service")
	if err != nil {
		t.Fatal(err)
	}
	baseUnit, err := parseUnit(base)
	if err != nil {
		t.Fatal(err)
	}
	// The same hardening as the one-machine unit, directive for directive.
	for key, want := range baseUnit["Service"] {
		if strings.HasPrefix(key, "Exec") {
			continue
		}
		if got := unit["Service"][key]; !slices.Equal(got, want) {
			t.Errorf("%s=%v, want %v as in systemd/signet-server.service", key, got, want)
		}
	}
	if len(unit["Install"]["WantedBy"]) == 0 {
		t.Error("no WantedBy: the unit cannot be enabled")
	}
	execs := append(unit["Service"]["ExecStart"], unit["Service"]["ExecStartPre"]...)
	if len(execs) != 2 {
		t.Fatalf("ExecStart and ExecStartPre: %v", execs)
	}
	for _, exec := range execs {
		args := strings.Fields(exec)
		if len(args) < 6 || filepath.Base(args[0]) != "signet" || args[1] != "server" || args[2] != "--config" || args[3] != "/etc/signet/server.yaml" {
			t.Errorf("%q, want signet server --config /etc/signet/server.yaml ...", exec)
			continue
		}
		if i := slices.Index(args, "--server-name"); i < 0 || i+1 >= len(args) || args[i+1] != "%H" {
			t.Errorf("%q: want --server-name %%H (each machine's replica named after its host)", exec)
		}
	}
	cfgData, err := os.ReadFile("systemd/replicas/server.yaml")
	if err != nil {
		t.Fatalf("the configuration the unit loads: %v", err)
	}
	var cfg etcdServerConfig
	if err := yaml.Unmarshal(cfgData, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.check(t)
}
