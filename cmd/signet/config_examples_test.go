package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/signet-mesh/signet/cmd/internal/agentcmd"
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

// deployDir holds the example configurations and manifests.
const deployDir = "../../deploy"

// exampleConfig is one signet configuration shipped under deploy/: a file
// of its own, or a key of a Kubernetes ConfigMap.
type exampleConfig struct {
	name    string // where it is, for messages
	command string // "server" or "agent"
	data    []byte
	// inCluster: the configuration takes Kubernetes credentials from the
	// pod it runs in (k8s_clusters without a kubeconfig), which a test
	// does not run in: the check must get that far, and fail there.
	inCluster bool
	// etcd: the configuration keeps the state in etcd and names its
	// client TLS files, which exist only on the target host.
	etcd bool
}

// exampleConfigs finds every signet configuration under deploy/: the files
// in deploy/config, and the server.yaml and agent.yaml keys of every
// ConfigMap in deploy/kubernetes.
func exampleConfigs(t *testing.T) []exampleConfig {
	t.Helper()
	var out []exampleConfig
	files, err := filepath.Glob(filepath.Join(deployDir, "config", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, exampleConfig{name: f, command: commandFor(t, f, filepath.Base(f)), data: data})
	}
	manifests, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "k8s-psat", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifests = append(manifests, k8s...)
	replicas, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "replicas", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifests = append(manifests, replicas...)
	// The configuration of the three CA machines (systemd/replicas).
	replicaConfig := filepath.Join(deployDir, "systemd", "replicas", "server.yaml")
	data, err := os.ReadFile(replicaConfig)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, exampleConfig{name: replicaConfig, command: "server", data: data, etcd: true})
	for _, f := range manifests {
		for i, doc := range yamlDocuments(t, f) {
			var cm struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
				Data map[string]string `json:"data"`
			}
			if err := yaml.Unmarshal(doc, &cm); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if cm.Kind != "ConfigMap" {
				continue
			}
			for key, content := range cm.Data {
				if !strings.HasSuffix(key, ".yaml") {
					continue
				}
				name := f + ": ConfigMap " + cm.Metadata.Name + " key " + key
				out = append(out, exampleConfig{name: name, command: commandFor(t, name, key), data: []byte(content),
					inCluster: strings.Contains(content, "k8s_clusters:") && !strings.Contains(content, "kubeconfig:"),
					etcd:      strings.Contains(content, "store: etcd")})
			}
		}
	}
	if len(out) < 4 {
		t.Fatalf("found only %d signet configurations under %s; the test is not looking where the examples are", len(out), deployDir)
	}
	return out
}

// commandFor maps a config's file name to the command that loads it.
func commandFor(t *testing.T, where, base string) string {
	t.Helper()
	switch base {
	case "server.yaml":
		return "server"
	case "agent.yaml":
		return "agent"
	}
	t.Fatalf("%s: not a signet configuration this test knows (server.yaml or agent.yaml)", where)
	return ""
}

// yamlDocuments splits a multi-document YAML file.
func yamlDocuments(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// hostFiles stands in for the files a configuration names that exist only
// on the target host (the passphrase, the trust bundle), through the
// environment: the precedence a deployment itself could use.
func hostFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	pass := filepath.Join(dir, "passphrase")
	if err := os.WriteFile(pass, []byte("example-passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundle, testRootPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"SIGNET_KEY_PASSPHRASE_FILE": pass,
		"SIGNET_TRUST_BUNDLE":        bundle,
	}
}

func testRootPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// checkConfig runs `signet <command> --config <data> --check-config`
// in-process: the loader and the validation a real start uses.
func checkConfig(t *testing.T, command string, data []byte, env map[string]string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), command+".yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	ce := &cliEnv{stdout: &stdout, stderr: &stderr, getenv: mapEnv(env)}
	err := run(context.Background(), ce, []string{command, "--config", path, "--check-config"})
	if err != nil && stderr.Len() > 0 {
		err = errors.Join(err, errors.New(stderr.String()))
	}
	if command == "agent" {
		// signet-agent runs the same command: it must say the same.
		var aout, aerr bytes.Buffer
		ce.stdout, ce.stderr = &aout, &aerr
		code := agentcmd.Main(context.Background(), ce.shared(), []string{"--config", path, "--check-config"})
		want := ""
		if err != nil {
			want = "signet-agent: " + cli.OneLine(err.Error()) + "\n"
		}
		if aout.String() != stdout.String() || aerr.String() != want || (code == 0) != (err == nil) {
			t.Errorf("signet-agent --check-config: exit %d, stdout %q, stderr %q; signet agent: stdout %q, error %v", code, aout.String(), aerr.String(), stdout.String(), err)
		}
	}
	return stdout.String(), err
}

// TestConfigExamples: every signet configuration under deploy/ passes
// `--check-config` with signet's own loader (unknown keys are errors).
func TestConfigExamples(t *testing.T) {
	env := hostFiles(t)
	for _, ex := range exampleConfigs(t) {
		t.Run(ex.name, func(t *testing.T) {
			env := env
			if ex.etcd {
				env = etcdHostFiles(t, env)
			}
			out, err := checkConfig(t, ex.command, ex.data, env)
			if ex.inCluster {
				const want = "kubeapi: not running in a Kubernetes pod"
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("%s: %v, want every other key valid and %q", ex.name, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", ex.name, err)
			}
			if !strings.Contains(out, "configuration is valid") {
				t.Errorf("%s: --check-config printed %q", ex.name, out)
			}
		})
	}
}

// TestConfigExamplesBroken: the check above does catch a broken example: a
// misspelt key, a bad value, a wrong type.
func TestConfigExamplesBroken(t *testing.T) {
	env := hostFiles(t)
	server, err := os.ReadFile(filepath.Join(deployDir, "config", "server.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	agent, err := os.ReadFile(filepath.Join(deployDir, "config", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		command string
		data    []byte
		wantErr string
	}{
		{"server: misspelt key", "server", append(bytes.Clone(server), "metrics_listn: 127.0.0.1:9090\n"...), `unknown field "metrics_listn"`},
		{"server: bad address", "server", bytes.Replace(server, []byte("listen: 0.0.0.0:8081"), []byte("listen: 8081"), 1), `listen "8081": must be host:port`},
		{"server: bad duration", "server", bytes.Replace(server, []byte("root_ttl: 8760h"), []byte("root_ttl: 1year"), 1), "root_ttl"},
		{"server: bad key type", "server", bytes.Replace(server, []byte("key_type: EC-P256"), []byte("key_type: DSA"), 1), "key_type"},
		{"server: bad root rotation", "server", bytes.Replace(server, []byte("root_rotation: manual"), []byte("root_rotation: weekly"), 1), `root_rotation "weekly": want manual or auto`},
		{"agent: misspelt key", "agent", append(bytes.Clone(agent), "sokcet: /run/x.sock\n"...), `unknown field "sokcet"`},
		{"agent: wrong type", "agent", append(bytes.Clone(agent), "insecure_bootstrap: sometimes\n"...), "insecure_bootstrap"},
		{"agent: bad metrics address", "agent", bytes.Replace(agent, []byte("metrics_listen: 127.0.0.1:9091"), []byte("metrics_listen: 9091"), 1), "metrics_listen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if bytes.Equal(tc.data, server) || bytes.Equal(tc.data, agent) {
				t.Fatal("the breakage did not apply: the example changed; update this test")
			}
			_, err := checkConfig(t, tc.command, tc.data, env)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// etcdHostFiles is hostFiles with the etcd client TLS files a replica's
// configuration names (etcd_ca, etcd_cert, etcd_key), set through the
// environment as hostFiles does the others.
func etcdHostFiles(t *testing.T, base map[string]string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "signet etcd client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ca.pem":         testRootPEM(t),
		"client.pem":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"client-key.pem": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := maps.Clone(base)
	env["SIGNET_ETCD_CA"] = filepath.Join(dir, "ca.pem")
	env["SIGNET_ETCD_CERT"] = filepath.Join(dir, "client.pem")
	env["SIGNET_ETCD_KEY"] = filepath.Join(dir, "client-key.pem")
	return env
}
