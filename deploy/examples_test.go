package deploy_test

import (
	"fmt"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/signet-mesh/signet/deploy/internal/envoycheck"
	"github.com/signet-mesh/signet/internal/doccmd"
)

const (
	examplesDir = "kubernetes/examples"
	// defaultAgentSocket is where `signet proxy` and every workload-side
	// command look without --socket (cmd/signet checks the constant).
	defaultAgentSocket = "/run/signet/agent.sock"
)

// psatAgent is what the examples must agree with in ../k8s-psat.
type psatAgent struct {
	trustDomain string
	socket      string // the agent's socket, as its config says
	hostDir     string // the host directory holding it
}

// readPSAT reads the trust domain (with auto_identity on) from the CA's
// ConfigMap and the socket and its hostPath from the agent's DaemonSet.
func readPSAT(t *testing.T) psatAgent {
	t.Helper()
	var out psatAgent
	for f, objs := range manifests(t, "kubernetes/k8s-psat") {
		for _, obj := range objs {
			switch o := obj.(type) {
			case *corev1.ConfigMap:
				for key, data := range o.Data {
					var cfg struct {
						TrustDomain string `json:"trust_domain"`
						Socket      string `json:"socket"`
						Clusters    []struct {
							AutoIdentity bool `json:"auto_identity"`
						} `json:"k8s_clusters"`
					}
					if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
						t.Fatalf("%s: ConfigMap %s key %s: %v", f, o.Name, key, err)
					}
					switch key {
					case "server.yaml":
						if len(cfg.Clusters) == 0 || !cfg.Clusters[0].AutoIdentity {
							t.Fatalf("%s: the examples rely on auto_identity, which is off", f)
						}
						out.trustDomain = cfg.TrustDomain
					case "agent.yaml":
						out.socket = cfg.Socket
					}
				}
			case *appsv1.DaemonSet:
				vols := map[string]corev1.Volume{}
				for _, v := range o.Spec.Template.Spec.Volumes {
					vols[v.Name] = v
				}
				for _, m := range o.Spec.Template.Spec.Containers[0].VolumeMounts {
					if v := vols[m.Name]; v.HostPath != nil && m.MountPath == "/run/signet" {
						out.hostDir = v.HostPath.Path
					}
				}
			}
		}
	}
	if out.trustDomain == "" || out.socket == "" || out.hostDir == "" {
		t.Fatalf("k8s-psat: trust domain %q, agent socket %q, socket host directory %q: want all three", out.trustDomain, out.socket, out.hostDir)
	}
	if out.socket != defaultAgentSocket {
		t.Fatalf("k8s-psat: the agent socket is %s, not the default %s the examples use", out.socket, defaultAgentSocket)
	}
	return out
}

// exampleApp is one file of the examples folder, as its README's table
// documents it.
type exampleApp struct {
	file, sidecar, mode, identity string
}

var tableRow = regexp.MustCompile("^\\| `([a-z-]+\\.yaml)` \\| (Envoy|`signet proxy`) \\| (PERMISSIVE|STRICT) \\| `(spiffe://[^`]+)` \\|$")

// documentedApps reads the README's table, and the modes its `signet mtls
// set` commands give each identity.
func documentedApps(t *testing.T) ([]exampleApp, map[string]string) {
	t.Helper()
	readme, err := os.ReadFile(examplesDir + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var apps []exampleApp
	for line := range strings.Lines(string(readme)) {
		if m := tableRow.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			apps = append(apps, exampleApp{file: m[1], sidecar: strings.Trim(m[2], "`"), mode: m[3], identity: m[4]})
		}
	}
	cmds, err := doccmd.Extract(readme)
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]string{}
	for _, c := range cmds {
		if len(c.Args) < 2 || c.Args[0] != "mtls" || c.Args[1] != "set" || slices.Contains(c.Args, "--dry-run") {
			continue
		}
		mode, id := flagValue(c.Args, "--mode"), flagValue(c.Args, "--spiffe-id")
		if len(mode) == 1 && len(id) == 1 {
			modes[id[0]] = mode[0]
		}
	}
	return apps, modes
}

// flagValue returns the values of a flag in args, "--f v" or "--f=v".
func flagValue(args []string, name string) []string {
	var out []string
	for i, a := range args {
		if a == name && i+1 < len(args) {
			out = append(out, args[i+1])
		} else if v, ok := strings.CutPrefix(a, name+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// exampleObjects is what one example file defines.
type exampleObjects struct {
	sa         *corev1.ServiceAccount
	configMaps map[string]*corev1.ConfigMap
	deploy     *appsv1.Deployment
	svc        *corev1.Service
}

// TestKubernetesExamples: the example applications decode strictly, are the
// ones the README documents (file, sidecar, mode, identity), reach the agent
// socket of ../k8s-psat, embed valid Envoy bootstraps, and call peers that
// exist under the identities they check.
func TestKubernetesExamples(t *testing.T) {
	psat := readPSAT(t)
	apps, modes := documentedApps(t)
	if len(apps) != 4 {
		t.Fatalf("README.md documents %d applications, want Envoy and signet proxy, each PERMISSIVE and STRICT", len(apps))
	}
	all := manifests(t, examplesDir)
	namespaces := map[string]bool{}
	byFile := map[string]*exampleObjects{}
	for f, objs := range all {
		ex := &exampleObjects{configMaps: map[string]*corev1.ConfigMap{}}
		for _, obj := range objs {
			switch o := obj.(type) {
			case *corev1.Namespace:
				namespaces[o.Name] = true
			case *corev1.ServiceAccount:
				if ex.sa != nil {
					t.Errorf("%s: more than one ServiceAccount", f)
				}
				ex.sa = o
			case *corev1.ConfigMap:
				ex.configMaps[o.Name] = o
			case *appsv1.Deployment:
				if ex.deploy != nil {
					t.Errorf("%s: more than one Deployment", f)
				}
				ex.deploy = o
			case *corev1.Service:
				if ex.svc != nil {
					t.Errorf("%s: more than one Service", f)
				}
				ex.svc = o
			default:
				t.Errorf("%s: unexpected %T", f, obj)
			}
		}
		byFile[path.Base(f)] = ex
	}
	// Peers are found by DNS name and port: every Service of the folder.
	services := map[string]string{} // "name.ns.svc:port" -> identity
	for _, app := range apps {
		ex := byFile[app.file]
		if ex == nil || ex.deploy == nil || ex.svc == nil || ex.sa == nil {
			t.Fatalf("%s: documented in README.md, but not a ServiceAccount, a Deployment and a Service", app.file)
		}
		for _, p := range ex.svc.Spec.Ports {
			services[fmt.Sprintf("%s.%s.svc:%d", ex.svc.Name, ex.svc.Namespace, p.Port)] = app.identity
		}
	}
	for _, app := range apps {
		t.Run(app.file, func(t *testing.T) {
			ex := byFile[app.file]
			if !namespaces[ex.deploy.Namespace] {
				t.Errorf("namespace %s is not defined in this folder", ex.deploy.Namespace)
			}
			if want := fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", psat.trustDomain, ex.sa.Namespace, ex.sa.Name); app.identity != want {
				t.Errorf("README.md documents %s, but the automatic identity of ServiceAccount %s/%s is %s", app.identity, ex.sa.Namespace, ex.sa.Name, want)
			}
			if got := modes[app.identity]; got != app.mode {
				t.Errorf("README.md's `signet mtls set` gives %s mode %q, its table %q", app.identity, got, app.mode)
			}
			checkExample(t, psat, app, ex, services)
		})
	}
	if len(byFile) != len(apps)+1 {
		t.Errorf("%d files, want the namespace and the %d applications of README.md", len(byFile), len(apps))
	}
}

func checkExample(t *testing.T, psat psatAgent, app exampleApp, ex *exampleObjects, services map[string]string) {
	d, pod := ex.deploy, ex.deploy.Spec.Template
	for k, v := range d.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("Deployment selector %s=%s does not match the pod template's labels %v", k, v, pod.Labels)
		}
	}
	for k, v := range ex.svc.Spec.Selector {
		if pod.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pod template's labels %v", k, v, pod.Labels)
		}
	}
	if ex.sa.Namespace != d.Namespace || ex.svc.Namespace != d.Namespace || pod.Spec.ServiceAccountName != ex.sa.Name {
		t.Errorf("the pod runs as %s/%s, want the file's ServiceAccount %s/%s", d.Namespace, pod.Spec.ServiceAccountName, ex.sa.Namespace, ex.sa.Name)
	}
	if p := pod.Spec.AutomountServiceAccountToken; p == nil || *p {
		t.Error("the pod mounts an API token it never uses")
	}
	if p := ex.sa.AutomountServiceAccountToken; p == nil || *p {
		t.Errorf("ServiceAccount %s mounts an API token", ex.sa.Name)
	}
	if psc := pod.Spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("the pod must run as non-root")
	}

	// The socket: the agent's host directory, at the same path inside.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
		if v.HostPath != nil && (v.HostPath.Path != psat.hostDir || v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectory) {
			t.Errorf("volume %s: hostPath %s (type %v), want the agent's %s, type Directory", v.Name, v.HostPath.Path, v.HostPath.Type, psat.hostDir)
		}
	}
	socketDir := path.Dir(psat.socket)
	var sidecar *corev1.Container
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		checkHardened(t, *c)
		for _, m := range c.VolumeMounts {
			v, ok := vols[m.Name]
			switch {
			case !ok:
				t.Errorf("container %s: mount %s names no volume", c.Name, m.Name)
			case v.HostPath != nil && (m.MountPath != socketDir || !m.ReadOnly):
				t.Errorf("container %s: the agent's directory is at %s (read-only %v), want %s read-only: the socket must be %s inside too", c.Name, m.MountPath, m.ReadOnly, socketDir, psat.socket)
			case v.HostPath != nil:
				sidecar = c
			}
		}
	}
	if sidecar == nil {
		t.Fatal("no container mounts the agent's socket directory")
	}

	// The Service reaches the sidecar's inbound port; probes use the health
	// port, never the inbound one.
	ports := map[string]int32{}
	for _, p := range sidecar.Ports {
		ports[p.Name] = p.ContainerPort
	}
	inbound, health := ports["inbound"], ports["health"]
	if inbound == 0 || health == 0 {
		t.Fatalf("sidecar %s: ports %v, want one named inbound and one named health", sidecar.Name, ports)
	}
	for _, p := range ex.svc.Spec.Ports {
		if p.TargetPort != intstr.FromString("inbound") && p.TargetPort != intstr.FromInt32(inbound) {
			t.Errorf("Service port %d goes to %s, not to the sidecar's inbound port", p.Port, p.TargetPort.String())
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if p == nil {
				continue
			}
			var port intstr.IntOrString
			switch {
			case p.HTTPGet != nil:
				port = p.HTTPGet.Port
			case p.TCPSocket != nil:
				port = p.TCPSocket.Port
			default:
				t.Errorf("container %s: a probe that is neither HTTP nor TCP", c.Name)
				continue
			}
			if port != intstr.FromString("health") && port != intstr.FromInt32(health) {
				t.Errorf("container %s: probe on port %s, want the sidecar's health port %d", c.Name, port.String(), health)
			}
		}
	}

	switch app.sidecar {
	case "Envoy":
		b := envoyBootstrap(t, sidecar, vols, ex.configMaps)
		if sock, err := envoycheck.AgentSocket(b); err != nil {
			t.Error(err)
		} else if sock != psat.socket {
			t.Errorf("Envoy's %s cluster dials %s, want the agent socket %s", envoycheck.AgentCluster, sock, psat.socket)
		}
		if err := envoycheck.CheckSDS(b); err != nil {
			t.Error(err)
		}
		if got := envoyMode(t, b, uint32(inbound), uint32(health)); got != app.mode {
			t.Errorf("Envoy's inbound listener on %d is %s, README.md says %s", inbound, got, app.mode)
		}
		for remote, peer := range envoyPeers(t, b) {
			checkPeer(t, remote, peer, services)
		}
	case "signet proxy":
		args := sidecar.Args
		if len(args) == 0 || args[0] != "proxy" {
			t.Fatalf("sidecar %s: args %v, want `signet proxy ...`", sidecar.Name, args)
		}
		if id := flagValue(args, "--spiffe-id"); len(id) != 1 || id[0] != app.identity {
			t.Errorf("--spiffe-id %v, want the pod's identity %s", id, app.identity)
		}
		if s := flagValue(args, "--socket"); len(s) > 0 && s[0] != psat.socket && s[0] != "unix://"+psat.socket {
			t.Errorf("--socket %s, want the agent socket %s", s[0], psat.socket)
		}
		for _, e := range sidecar.Env {
			if e.Name == "SPIFFE_ENDPOINT_SOCKET" && e.Value != "unix://"+psat.socket {
				t.Errorf("SPIFFE_ENDPOINT_SOCKET=%s, want unix://%s", e.Value, psat.socket)
			}
		}
		listens := map[string]bool{}
		for _, in := range flagValue(args, "--inbound") {
			l, _, _ := strings.Cut(in, "=")
			_, p, err := net.SplitHostPort(l)
			if err != nil {
				t.Errorf("--inbound %s: %v", in, err)
			}
			listens[p] = true
		}
		if !listens[strconv.Itoa(int(inbound))] {
			t.Errorf("no --inbound listens on the inbound port %d", inbound)
		}
		if hp := flagValue(args, "--health-port"); !slices.Contains(hp, strconv.Itoa(int(health))) || !listens[strconv.Itoa(int(health))] {
			t.Errorf("--health-port %v: want %d, with an --inbound on it", hp, health)
		}
		if slices.Contains(flagValue(args, "--health-port"), strconv.Itoa(int(inbound))) {
			t.Errorf("the inbound port %d is a health port: it would pass plaintext in STRICT", inbound)
		}
		outs, peers := flagValue(args, "--outbound"), flagValue(args, "--peer-id")
		for i, out := range outs {
			_, remote, _ := strings.Cut(out, "=")
			peer := ""
			switch {
			case len(peers) == 1:
				peer = peers[0]
			case len(peers) == len(outs):
				peer = peers[i]
			}
			checkPeer(t, remote, peer, services)
		}
	default:
		t.Fatalf("unknown sidecar %q", app.sidecar)
	}
}

// checkPeer: an outbound's remote is a Service of the folder, and the
// identity it must present is that Service's pods'.
func checkPeer(t *testing.T, remote, peer string, services map[string]string) {
	t.Helper()
	id, ok := services[remote]
	switch {
	case !ok:
		t.Errorf("outbound to %s: no Service of this folder is there", remote)
	case id != peer:
		t.Errorf("outbound to %s checks the peer is %q, but that Service's pods are %s", remote, peer, id)
	}
}

// envoyBootstrap loads the bootstrap Envoy's `-c` names, from its ConfigMap.
func envoyBootstrap(t *testing.T, c *corev1.Container, vols map[string]corev1.Volume, cms map[string]*corev1.ConfigMap) *bootstrapv3.Bootstrap {
	t.Helper()
	args := append(slices.Clone(c.Command), c.Args...)
	i := slices.Index(args, "-c")
	if i < 0 || i+1 == len(args) {
		t.Fatalf("container %s: %v gives Envoy no -c CONFIG", c.Name, args)
	}
	file := args[i+1]
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		if v.ConfigMap == nil || path.Dir(file) != m.MountPath {
			continue
		}
		cm := cms[v.ConfigMap.Name]
		if cm == nil {
			t.Fatalf("volume %s: ConfigMap %s is not in this file", v.Name, v.ConfigMap.Name)
		}
		data, ok := cm.Data[path.Base(file)]
		if !ok {
			t.Fatalf("Envoy loads %s, but ConfigMap %s has no key %s", file, cm.Name, path.Base(file))
		}
		b, err := envoycheck.Load([]byte(data))
		if err != nil {
			t.Fatalf("ConfigMap %s key %s: %v", cm.Name, path.Base(file), err)
		}
		return b
	}
	t.Fatalf("Envoy loads %s, which no ConfigMap volume mounts", file)
	return nil
}

// envoyMode tells the mTLS mode of the listener on port: STRICT when
// every filter chain is TLS with a client certificate required,
// PERMISSIVE when a plaintext chain sits beside such a TLS chain. The
// health listener must be plaintext.
func envoyMode(t *testing.T, b *bootstrapv3.Bootstrap, inbound, health uint32) string {
	t.Helper()
	byPort := map[uint32]*listenerv3.Listener{}
	for _, l := range b.GetStaticResources().GetListeners() {
		byPort[l.GetAddress().GetSocketAddress().GetPortValue()] = l
	}
	if h := byPort[health]; h == nil {
		t.Errorf("no Envoy listener on the health port %d", health)
	} else {
		for _, fc := range h.GetFilterChains() {
			if fc.GetTransportSocket() != nil {
				t.Errorf("health listener: chain %s is TLS; probes are plaintext", fc.GetName())
			}
		}
	}
	l := byPort[inbound]
	if l == nil {
		t.Fatalf("no Envoy listener on the inbound port %d", inbound)
	}
	var mtls, plain int
	for _, fc := range l.GetFilterChains() {
		ts := fc.GetTransportSocket()
		if ts == nil {
			plain++
			continue
		}
		var dtc tlsv3.DownstreamTlsContext
		if err := ts.GetTypedConfig().UnmarshalTo(&dtc); err != nil {
			t.Fatalf("chain %s: %v", fc.GetName(), err)
		}
		if !dtc.GetRequireClientCertificate().GetValue() || fc.GetFilterChainMatch().GetTransportProtocol() != "tls" {
			t.Errorf("chain %s: TLS without a required client certificate, or not matched on transport_protocol tls", fc.GetName())
		}
		mtls++
	}
	switch {
	case mtls > 0 && plain == 0:
		return "STRICT"
	case mtls > 0 && plain > 0:
		return "PERMISSIVE"
	case mtls == 0 && plain > 0:
		return "DISABLE"
	}
	return "no filter chain"
}

// envoyPeers returns, for each cluster that originates TLS, its remote
// (host:port) and the SPIFFE ID it requires (an exact URI SAN).
func envoyPeers(t *testing.T, b *bootstrapv3.Bootstrap) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetTransportSocket() == nil {
			continue
		}
		var utc tlsv3.UpstreamTlsContext
		if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&utc); err != nil {
			t.Fatalf("cluster %s: %v", c.GetName(), err)
		}
		var sans []string
		err := envoycheck.EachMessage(utc.ProtoReflect(), func(m protoreflect.Message) error {
			if s, ok := m.Interface().(*tlsv3.SubjectAltNameMatcher); ok && s.GetSanType() == tlsv3.SubjectAltNameMatcher_URI {
				sans = append(sans, s.GetMatcher().GetExact())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(sans) != 1 || sans[0] == "" || len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			t.Errorf("cluster %s: want one endpoint and one exact URI SAN, the peer's SPIFFE ID", c.GetName())
			continue
		}
		sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		out[net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))] = sans[0]
	}
	if len(out) == 0 {
		t.Error("no outbound mTLS cluster")
	}
	return out
}
