// Package deploy_test loads every deployment example in this folder, so
// that a broken one fails CI: Kubernetes manifests are decoded strictly
// into the Kubernetes API types (an unknown or misplaced field is an
// error) and checked for probes, resources and security settings
// (examples_test.go checks the example applications of kubernetes/examples
// against their README and kubernetes/k8s-psat); systemd
// units and the container file are parsed and checked for what they must
// contain; the Grafana dashboard must parse and use only metrics that the
// CA and the agent export. The signet configurations (deploy/config and
// the ConfigMaps) go through signet's own loader in
// cmd/signet/config_examples_test.go, and deploy/envoy has its own test.
// Nothing imports this folder.
package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/signet-mesh/signet/agent"
	"github.com/signet-mesh/signet/ca/server"
)

// decoder decodes Kubernetes objects of the kinds the manifests use,
// strictly: unknown and duplicate fields are errors.
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, rbacv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// decodeManifest decodes every document of a multi-document YAML file.
func decodeManifest(data []byte) ([]runtime.Object, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if gvk.Kind == "" {
			return nil, fmt.Errorf("document %d: no kind", i)
		}
		objs = append(objs, obj)
	}
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out.Write(line)
		}
	}
	return out.Bytes()
}

// manifests decodes every file dir/*.yaml.
func manifests(t *testing.T, dir string) map[string][]runtime.Object {
	t.Helper()
	files, err := filepath.Glob(dir + "/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no manifests under %s/", dir)
	}
	out := map[string][]runtime.Object{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeManifest(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = objs
	}
	return out
}

// externalObjects are created by operators, not by the manifests (see the
// comments at the top of server.yaml and agent.yaml).
var externalObjects = map[string]bool{
	"Secret/signet-server-passphrase": true,
	"Secret/signet-agent-passphrase":  true,
	"ConfigMap/signet-bundle":         true,
	// kubernetes/replicas: the etcd client credentials.
	"Secret/signet-etcd-client": true,
}

// TestKubernetesManifests: every manifest decodes strictly, and every
// workload has probes, resource requests and limits, a locked-down
// security context and references only objects that exist.
func TestKubernetesManifests(t *testing.T) {
	// kubernetes/ deploys with join tokens; kubernetes/k8s-psat/ instead
	// with Kubernetes node and workload attestation.
	for _, dir := range []string{"kubernetes", "kubernetes/k8s-psat"} {
		t.Run(dir, func(t *testing.T) { checkManifests(t, dir) })
	}
}

func checkManifests(t *testing.T, dir string) {
	all := manifests(t, dir)
	defined := map[string]bool{}
	var workloads []workload
	var governing [][2]string // file, serviceName of a StatefulSet
	for f, objs := range all {
		for _, obj := range objs {
			switch o := obj.(type) {
			case *corev1.ConfigMap:
				defined["ConfigMap/"+o.Name] = true
			case *corev1.Secret:
				defined["Secret/"+o.Name] = true
			case *corev1.ServiceAccount:
				defined["ServiceAccount/"+o.Name] = true
				if o.AutomountServiceAccountToken == nil || *o.AutomountServiceAccountToken {
					t.Errorf("%s: ServiceAccount %s mounts an API token; signet never calls the Kubernetes API", f, o.Name)
				}
			case *corev1.Service:
				defined["Service/"+o.Name] = true
			case *appsv1.StatefulSet:
				workloads = append(workloads, workload{file: f, kind: "StatefulSet", name: o.Name, selector: o.Spec.Selector.MatchLabels, pod: o.Spec.Template})
				if o.Spec.Replicas == nil || *o.Spec.Replicas != 1 {
					t.Errorf("%s: StatefulSet %s must have exactly 1 replica (one bbolt writer)", f, o.Name)
				}
				if len(o.Spec.VolumeClaimTemplates) == 0 {
					t.Errorf("%s: StatefulSet %s has no PVC for its store", f, o.Name)
				}
				for _, v := range o.Spec.VolumeClaimTemplates {
					defined["PVC/"+v.Name] = true
				}
				governing = append(governing, [2]string{f, o.Spec.ServiceName})
			case *appsv1.DaemonSet:
				workloads = append(workloads, workload{file: f, kind: "DaemonSet", name: o.Name, selector: o.Spec.Selector.MatchLabels, pod: o.Spec.Template})
			}
		}
	}
	for _, g := range governing {
		if !defined["Service/"+g[1]] {
			t.Errorf("%s: serviceName %s is not defined", g[0], g[1])
		}
	}
	if len(workloads) != 2 {
		t.Fatalf("found %d workloads, want the CA StatefulSet and the agent DaemonSet", len(workloads))
	}
	for _, w := range workloads {
		t.Run(w.kind+"/"+w.name, func(t *testing.T) { w.check(t, defined) })
	}
}

type workload struct {
	file, kind, name string
	selector         map[string]string
	pod              corev1.PodTemplateSpec
}

func (w workload) check(t *testing.T, defined map[string]bool) {
	for k, v := range w.selector {
		if w.pod.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels %v", k, v, w.pod.Labels)
		}
	}
	spec := w.pod.Spec
	if sa := spec.ServiceAccountName; sa == "" || !defined["ServiceAccount/"+sa] {
		t.Errorf("service account %q is not defined", sa)
	}
	mounts := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		mounts[v.Name] = v
		switch {
		case v.ConfigMap != nil:
			ref := "ConfigMap/" + v.ConfigMap.Name
			if !defined[ref] && !externalObjects[ref] {
				t.Errorf("volume %s: %s is neither defined nor documented as created by operators", v.Name, ref)
			}
		case v.Secret != nil:
			ref := "Secret/" + v.Secret.SecretName
			if !defined[ref] && !externalObjects[ref] {
				t.Errorf("volume %s: %s is neither defined nor documented as created by operators", v.Name, ref)
			}
			if m := v.Secret.DefaultMode; m == nil || *m&0o007 != 0 {
				t.Errorf("volume %s: secret files must not be world-readable", v.Name)
			}
		}
	}
	if len(spec.Containers) == 0 {
		t.Fatal("no containers")
	}
	for _, c := range spec.Containers {
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("container %s: needs a readiness and a liveness probe", c.Name)
		}
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if p != nil && p.Exec != nil {
				cmd := p.Exec.Command
				if bin := filepath.Base(cmd[0]); len(cmd) < 3 || (bin != "signet" && bin != "signet-agent") || cmd[1] != "healthcheck" {
					t.Errorf("container %s: exec probe %v is not `signet healthcheck` (or signet-agent's)", c.Name, cmd)
				}
			}
		}
		checkHardened(t, c)
		for _, m := range c.VolumeMounts {
			if _, ok := mounts[m.Name]; !ok && !defined["PVC/"+m.Name] {
				t.Errorf("container %s: mount %s names no volume", c.Name, m.Name)
			}
		}
		// `signet <command> --config PATH` (the image's entrypoint), or
		// `signet-agent --config PATH`: PATH comes from a mount.
		args := c.Args
		switch {
		case len(c.Command) == 1 && filepath.Base(c.Command[0]) == "signet-agent":
			args = append([]string{"agent"}, c.Args...)
		case len(c.Command) > 0:
			t.Errorf("container %s: command %v, want the image's entrypoint (signet) or signet-agent", c.Name, c.Command)
		}
		if len(args) < 3 || (args[0] != "server" && args[0] != "agent") || args[1] != "--config" {
			t.Errorf("container %s: command %v args %v, want [server|agent --config PATH] or signet-agent [--config PATH]", c.Name, c.Command, c.Args)
		} else if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return args[2] == m.MountPath || strings.HasPrefix(args[2], m.MountPath+"/")
		}) {
			t.Errorf("container %s: config %s is not on any mounted volume", c.Name, args[2])
		}
	}
	// The CA runs as a non-root user; the agent needs root (see
	// agent.yaml) and says so explicitly.
	if w.kind == "StatefulSet" {
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Error("the CA must run as a non-root user")
		}
	}
	if w.kind == "DaemonSet" {
		hostSockets := false
		for _, v := range spec.Volumes {
			if v.HostPath != nil && v.HostPath.Path == "/run/signet" {
				hostSockets = true
			}
		}
		if !hostSockets {
			t.Error("the agent must put its socket in a hostPath directory")
		}
	}
}

// checkHardened: resource requests and limits, and a locked-down security
// context (no privilege escalation, read-only root, ALL capabilities
// dropped, not privileged).
func checkHardened(t *testing.T, c corev1.Container) {
	t.Helper()
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("container %s: no %s request", c.Name, res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("container %s: no %s limit", c.Name, res)
		}
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("container %s: no securityContext", c.Name)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("container %s: allowPrivilegeEscalation must be false", c.Name)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("container %s: the root filesystem must be read-only", c.Name)
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
		t.Errorf("container %s: must drop ALL capabilities", c.Name)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("container %s: must not be privileged", c.Name)
	}
}

// TestKubernetesStrict: the strict decoding really refuses what a typo or a
// misplaced field produces.
func TestKubernetesStrict(t *testing.T) {
	tests := []struct {
		name, doc, wantErr string
	}{
		{"unknown field", `
apiVersion: v1
kind: ConfigMap
metadata:
  name: x
dataa: {}
`, "unknown field"},
		{"misplaced field", `
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: x
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: i
          imagePullPolcy: Always
`, "imagePullPolcy"},
		{"duplicate field", `
apiVersion: v1
kind: ServiceAccount
metadata:
  name: x
  name: y
`, "name"},
		{"wrong type", `
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: x
spec:
  replicas: one
`, "replicas"},
		{"unknown kind", `
apiVersion: signet.example/v1
kind: Widget
metadata:
  name: x
`, "Widget"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeManifest([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// systemdDirectives are the unit file directives the units may use: a
// misspelt one (which systemd only warns about, then ignores) fails here.
var systemdDirectives = map[string][]string{
	"Unit": {"Description", "Documentation", "Wants", "After", "Requires", "Before"},
	"Service": {
		"Type", "User", "Group", "ExecStartPre", "ExecStart", "ExecReload", "Restart", "RestartSec", "TimeoutStopSec",
		"LoadCredential", "Environment", "StateDirectory", "StateDirectoryMode", "RuntimeDirectory",
		"RuntimeDirectoryMode", "ConfigurationDirectory", "ConfigurationDirectoryMode", "UMask", "LimitNOFILE",
		"NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem", "ProtectHome",
		"PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset",
		"RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
		"LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC", "SystemCallArchitectures",
		"SystemCallFilter", "SystemCallErrorNumber",
	},
	"Install": {"WantedBy"},
}

// parseUnit reads a systemd unit into section -> directive -> values.
func parseUnit(data []byte) (map[string]map[string][]string, error) {
	unit := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			if _, ok := systemdDirectives[section]; !ok {
				return nil, fmt.Errorf("line %d: unknown section [%s]", i+1, section)
			}
			unit[section] = map[string][]string{}
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: not a directive: %q", i+1, line)
		}
		if section == "" {
			return nil, fmt.Errorf("line %d: directive outside a section", i+1)
		}
		if !slices.Contains(systemdDirectives[section], key) {
			return nil, fmt.Errorf("line %d: unknown or unexpected directive %s in [%s]", i+1, key, section)
		}
		unit[section][key] = append(unit[section][key], val)
	}
	return unit, nil
}

// TestSystemdUnits: the units parse, are hardened, and start signet with a
// config file shipped in deploy/config.
func TestSystemdUnits(t *testing.T) {
	files, err := filepath.Glob("systemd/*.service")
	if err != nil || len(files) != 2 {
		t.Fatalf("systemd units: %v, %v; want signet-server and signet-agent", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			unit, err := parseUnit(data)
			if err != nil {
				t.Fatal(err)
			}
			svc := unit["Service"]
			for _, want := range []string{"ProtectSystem", "NoNewPrivileges", "RuntimeDirectory", "StateDirectory", "CapabilityBoundingSet", "SystemCallFilter"} {
				if len(svc[want]) == 0 {
					t.Errorf("missing %s=", want)
				}
			}
			if v := svc["ProtectSystem"]; len(v) > 0 && v[0] != "strict" {
				t.Errorf("ProtectSystem=%s, want strict", v[0])
			}
			if v := svc["NoNewPrivileges"]; len(v) > 0 && v[0] != "yes" {
				t.Errorf("NoNewPrivileges=%s, want yes", v[0])
			}
			if len(unit["Install"]["WantedBy"]) == 0 {
				t.Error("no WantedBy: the unit cannot be enabled")
			}
			for _, exec := range append(svc["ExecStart"], svc["ExecStartPre"]...) {
				args := strings.Fields(exec)
				if len(args) > 0 && filepath.Base(args[0]) == "signet-agent" {
					// signet-agent is `signet agent`.
					args = append([]string{"signet", "agent"}, args[1:]...)
				}
				if len(args) < 4 || filepath.Base(args[0]) != "signet" || args[2] != "--config" {
					t.Errorf("ExecStart %q, want signet <command> --config FILE or signet-agent --config FILE", exec)
					continue
				}
				example := filepath.Join("config", filepath.Base(args[3]))
				if _, err := os.Stat(example); err != nil {
					t.Errorf("%s loads %s, but deploy/%s does not exist", args[1], args[3], example)
				}
				if filepath.Base(args[3]) != args[1]+".yaml" {
					t.Errorf("signet %s loads %s, want %s.yaml", args[1], args[3], args[1])
				}
			}
		})
	}

	if _, err := parseUnit([]byte("[Service]\nProtectSystm=strict\n")); err == nil {
		t.Error("a misspelt directive parsed")
	}
}

// TestContainerfile: a multi-stage build of ./cmd/signet and
// ./cmd/signet-agent without cgo into a distroless static image, running
// as a non-root user, with signet as the entrypoint.
func TestContainerfile(t *testing.T) {
	data, err := os.ReadFile("container/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	known := []string{"FROM", "ARG", "WORKDIR", "COPY", "RUN", "ENV", "LABEL", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}
	var froms, users, entrypoints, copies []string
	build := ""
	// Join continuation lines, drop comments.
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		if !slices.Contains(known, instr) {
			t.Errorf("line %d: unknown instruction %q", i+1, instr)
		}
		switch instr {
		case "FROM":
			froms = append(froms, rest)
		case "USER":
			users = append(users, rest)
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, rest)
		case "COPY":
			copies = append(copies, rest)
		case "RUN":
			if strings.Contains(rest, "go build") {
				build = rest
			}
		}
	}
	if len(froms) < 2 {
		t.Errorf("FROM %v: want a build stage and a runtime stage", froms)
	} else if final := froms[len(froms)-1]; !strings.Contains(final, "distroless/static") || !strings.Contains(final, "nonroot") {
		t.Errorf("final stage FROM %s, want distroless static nonroot", final)
	}
	for tag, why := range map[string]string{
		"grpcnotrace":      "megabytes less binary, all of it mapped by every process",
		"nethttpomithttp2": "no HTTP/2 in net/http: 0.5 MB less binary, all of it mapped by every process",
	} {
		if !strings.Contains(build, tag) {
			t.Errorf("build %q, want -tags %s (%s)", build, tag, why)
		}
	}
	for _, cmd := range []string{"signet", "signet-agent"} {
		if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/"+cmd+" ") && !strings.HasSuffix(build, "./cmd/"+cmd) {
			t.Errorf("build %q, want a static (CGO_ENABLED=0) build of ./cmd/%s", build, cmd)
		}
		if _, err := os.Stat("../cmd/" + cmd + "/main.go"); err != nil {
			t.Errorf("the container builds ./cmd/%s: %v", cmd, err)
		}
		if !slices.ContainsFunc(copies, func(c string) bool {
			return strings.Contains(c, "/out/"+cmd+" ") && strings.HasSuffix(c, "/usr/local/bin/")
		}) {
			t.Errorf("COPY %v: want /out/%s installed in /usr/local/bin/ (the manifests run it there)", copies, cmd)
		}
	}
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1], "0") || strings.HasPrefix(users[len(users)-1], "root") {
		t.Errorf("USER %v, want a non-root user", users)
	}
	if len(entrypoints) != 1 || !strings.Contains(entrypoints[0], "/usr/local/bin/signet") {
		t.Errorf("ENTRYPOINT %v, want /usr/local/bin/signet (the manifests' probes call it)", entrypoints)
	}
}

// recorder is a Registerer that keeps what is registered.
type recorder struct{ collectors []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// exportedMetrics returns the names of every metric the CA and the agent
// export, with the series names of their histograms.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{}
	server.NewMetrics(rec)
	agent.NewMetrics(rec)
	names := map[string]bool{}
	for _, c := range rec.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			names[m[1]] = true
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+suffix] = true
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no metrics found")
	}
	return names
}

var metricRef = regexp.MustCompile(`\bsignet_[a-z0-9_]+`)

// TestGrafanaDashboard: the dashboard parses, every panel queries
// Prometheus, and every metric it uses is one signet exports.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana/signet-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("parsing the dashboard: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	known := exportedMetrics(t)
	used := map[string]bool{}
	ids := map[int]bool{}
	var exprs []string
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	for _, e := range exprs {
		for _, name := range metricRef.FindAllString(e, -1) {
			used[name] = true
			if !known[name] {
				t.Errorf("the dashboard queries %s, which neither the CA nor the agent exports (in %q)", name, e)
			}
		}
	}
	// Every signet metric is on the dashboard somewhere.
	for name := range known {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if base != name {
			continue
		}
		if !used[name] && !used[name+"_bucket"] {
			t.Errorf("metric %s is on no panel", name)
		}
	}
}
