package kubeapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testCert returns a self-signed certificate and its key, PEM encoded.
func testCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubetest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestParseKubeconfig(t *testing.T) {
	certPEM, keyPEM := testCert(t)
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := func(cluster, user string) string {
		return `apiVersion: v1
kind: Config
current-context: ctx
contexts:
- name: ctx
  context: {cluster: c, user: u}
clusters:
- name: c
  cluster:
` + cluster + `
users:
- name: u
  user:
` + user + "\n"
	}
	server := "    server: https://127.0.0.1:6443\n"
	tests := []struct {
		name       string
		config     string
		wantErr    string
		wantToken  string
		wantCert   bool
		wantServer string
	}{
		{name: "token and CA data", config: kubeconfig(server+"    certificate-authority-data: "+b64(certPEM), "    token: abc"),
			wantToken: "abc", wantServer: "https://127.0.0.1:6443"},
		{name: "token file and CA file, relative to the kubeconfig", config: kubeconfig(server+"    certificate-authority: ca.crt", "    tokenFile: token"),
			wantToken: "file-token", wantServer: "https://127.0.0.1:6443"},
		{name: "client certificate", config: kubeconfig(server+"    certificate-authority-data: "+b64(certPEM),
			"    client-certificate-data: "+b64(certPEM)+"\n    client-key-data: "+b64(keyPEM)), wantCert: true, wantServer: "https://127.0.0.1:6443"},
		{name: "exec plugin", config: kubeconfig(server, "    exec: {command: aws}"), wantErr: "exec or auth-provider plugin"},
		{name: "CA is no PEM", config: kubeconfig(server+"    certificate-authority-data: "+b64([]byte("nope")), "    token: abc"), wantErr: "holds no PEM certificate"},
		{name: "CA data not base64", config: kubeconfig(server+"    certificate-authority-data: '!!'", "    token: abc"), wantErr: "certificate-authority-data is not base64"},
		{name: "CA file missing", config: kubeconfig(server+"    certificate-authority: missing.crt", "    token: abc"), wantErr: "certificate-authority: open"},
		{name: "client key without certificate", config: kubeconfig(server, "    client-key-data: "+b64(keyPEM)), wantErr: "client certificate"},
		{name: "server not a URL", config: kubeconfig("    server: 127.0.0.1:6443", "    token: abc"), wantErr: "is not an http(s) URL"},
		{name: "no current context", config: "clusters: []\n", wantErr: "no current-context"},
		{name: "unknown current context", config: "current-context: other\ncontexts: []\n", wantErr: `current-context "other" is not among its contexts`},
		{name: "unknown cluster", config: "current-context: x\ncontexts:\n- name: x\n  context: {cluster: nope, user: u}\n", wantErr: `names cluster "nope"`},
		{name: "not YAML", config: "{{{", wantErr: "parsing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseKubeconfig([]byte(tt.config), dir)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if got := c.Server(); got != tt.wantServer {
				t.Errorf("server %q, want %q", got, tt.wantServer)
			}
			tok, err := c.bearer()
			if err != nil {
				t.Fatal(err)
			}
			if tok != tt.wantToken {
				t.Errorf("bearer token %q, want %q", tok, tt.wantToken)
			}
			tr := c.http.Transport.(*http.Transport)
			if got := len(tr.TLSClientConfig.Certificates) == 1; got != tt.wantCert {
				t.Errorf("client certificate set: %v, want %v", got, tt.wantCert)
			}
			if tr.TLSClientConfig.RootCAs == nil {
				t.Error("no CA to authenticate the server with")
			}
		})
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want, wantErr string
	}{
		{name: "trailing newline", path: write("a", "tok\n"), want: "tok"},
		{name: "empty", path: write("b", " \n"), wantErr: "is empty"},
		{name: "too large", path: write("c", strings.Repeat("x", maxTokenFileBytes+1)), wantErr: "not a token"},
		{name: "missing", path: filepath.Join(dir, "missing"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadTokenFile(tt.path)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("token %q, want %q", got, tt.want)
			}
		})
	}
}

// TestKubeconfigYAML: kubeconfigs are read from the parsed YAML document,
// as kubectl and other tools write them: keys signet does not read are
// skipped, JSON works, and anchors, aliases and merge keys are followed.
func TestKubeconfigYAML(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		want    kubeconfig
		wantErr string
	}{
		{name: "kubectl's keys", config: `apiVersion: v1
kind: Config
preferences: {}
current-context: ctx
clusters:
- name: c
  cluster:
    server: https://k:6443
    insecure-skip-tls-verify: true
    tls-server-name: kube
    extensions: [{name: x, extension: {a: 1}}]
contexts:
- name: ctx
  context: {cluster: c, user: u, namespace: default}
users:
- name: u
  user:
    tokenFile: /t
    auth-provider: null
`, want: kubeconfig{CurrentContext: "ctx",
			Clusters: []kcCluster{cluster("c", "https://k:6443", true, "kube")},
			Contexts: []kcContext{kctx("ctx", "c", "u")},
			Users:    []kcUser{user("u", "", "/t", false)}}},
		{name: "JSON", config: `{"current-context": "ctx", "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
 "users": [{"name": "u", "user": {"token": "abc", "exec": {"command": "aws"}}}]}`,
			want: kubeconfig{CurrentContext: "ctx", Contexts: []kcContext{kctx("ctx", "c", "u")}, Users: []kcUser{user("u", "abc", "", true)}}},
		{name: "anchors, aliases and merge keys", config: `current-context: ctx
clusters:
- &base
  name: c
  cluster: {server: https://k:6443}
- <<: *base
  name: d
contexts:
- name: &ctx ctx
  context: {cluster: d, user: *ctx}
`, want: kubeconfig{CurrentContext: "ctx",
			Clusters: []kcCluster{cluster("c", "https://k:6443", false, ""), cluster("d", "https://k:6443", false, "")},
			Contexts: []kcContext{kctx("ctx", "d", "ctx")}}},
		{name: "empty", config: "", want: kubeconfig{}},
		{name: "a list for a value", config: "current-context: [a]\n", wantErr: "line 1: current-context must be a single value"},
		{name: "a value for a list", config: "\nclusters: c\n", wantErr: "line 2: clusters must be a list"},
		{name: "not a boolean", config: "clusters:\n- cluster: {insecure-skip-tls-verify: maybe}\n", wantErr: "line 2: insecure-skip-tls-verify must be true or false"},
		{name: "not a mapping", config: "- a\n", wantErr: "line 1: the kubeconfig must be a mapping"},
		{name: "syntax", config: "a: [b\n", wantErr: "line 1: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeKubeconfig([]byte(tt.config))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("kubeconfig (-want +got):\n%s", diff)
			}
		})
	}
}

func cluster(name, server string, insecure bool, tlsName string) kcCluster {
	var c kcCluster
	c.Name, c.Cluster.Server, c.Cluster.InsecureSkipTLSVerify, c.Cluster.TLSServerName = name, server, insecure, tlsName
	return c
}

func kctx(name, cluster, user string) kcContext {
	var c kcContext
	c.Name, c.Context.Cluster, c.Context.User = name, cluster, user
	return c
}

func user(name, token, tokenFile string, exec bool) kcUser {
	var u kcUser
	u.Name, u.User.Token, u.User.TokenFile, u.User.Exec = name, token, tokenFile, exec
	return u
}
