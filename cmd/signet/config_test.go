package main

import (
	"bytes"
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	"go.step.sm/crypto/kms/apiv1"

	"github.com/signet-mesh/signet/cmd/internal/agentcmd"
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

// mapEnv is a getenv over a map.
func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// loadServerConfig runs the server's loader as runServer does: defaults,
// then file, then environment, then flags.
func loadServerConfig(t *testing.T, file string, env map[string]string, args ...string) (serverConfig, error) {
	t.Helper()
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := defaultServerConfig()
	_, apply := cli.RegisterConfigFlags(fs, &cfg, serverUsages, mapEnv(env))
	if file != "" {
		args = append([]string{"--config", file}, args...)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing %v: %v", args, err)
	}
	return cfg, apply()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigPrecedence: each layer overrides the one before it, key by
// key: defaults < file < SIGNET_* environment < flags.
func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, "server.yaml", `
trust_domain: file.example
data_dir: /from/file
listen: 10.0.0.1:1
log_level: debug
admin_uids: [1, 2]
root_ttl: 48h
metrics_listen: 127.0.0.1:9000
`)
	def := defaultServerConfig()
	fromFile := def
	fromFile.TrustDomain = "file.example"
	fromFile.DataDir = "/from/file"
	fromFile.Listen = "10.0.0.1:1"
	fromFile.LogLevel = "debug"
	fromFile.AdminUIDs = []uint32{1, 2}
	fromFile.RootTTL = cli.Duration(48 * 60 * 60 * 1e9)
	fromFile.MetricsListen = "127.0.0.1:9000"

	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want func(c *serverConfig)
	}{
		{name: "defaults", want: func(c *serverConfig) { *c = def }},
		{name: "file over defaults", file: file, want: func(c *serverConfig) { *c = fromFile }},
		{
			name: "environment over file",
			file: file,
			env:  map[string]string{"SIGNET_TRUST_DOMAIN": "env.example", "SIGNET_ADMIN_UIDS": "3", "SIGNET_LOG_FORMAT": "json"},
			want: func(c *serverConfig) {
				*c = fromFile
				c.TrustDomain = "env.example"
				c.AdminUIDs = []uint32{3}
				c.LogFormat = "json"
			},
		},
		{
			name: "flags over environment and file",
			file: file,
			env:  map[string]string{"SIGNET_TRUST_DOMAIN": "env.example", "SIGNET_LISTEN": "10.0.0.2:2"},
			args: []string{"--trust-domain", "flag.example", "--root-ttl", "24h"},
			want: func(c *serverConfig) {
				*c = fromFile
				c.TrustDomain = "flag.example"
				c.Listen = "10.0.0.2:2"
				c.RootTTL = cli.Duration(24 * 60 * 60 * 1e9)
			},
		},
		{
			// A flag given explicitly wins even when it repeats the
			// default.
			name: "flag equal to the default still overrides",
			file: file,
			env:  map[string]string{"SIGNET_LOG_LEVEL": "warn"},
			args: []string{"--log-level", "info"},
			want: func(c *serverConfig) { *c = fromFile; c.LogLevel = "info" },
		},
		{
			name: "environment without a file",
			env:  map[string]string{"SIGNET_DATA_DIR": "/from/env", "SIGNET_METRICS_LISTEN": "127.0.0.1:9100"},
			want: func(c *serverConfig) { *c = def; c.DataDir = "/from/env"; c.MetricsListen = "127.0.0.1:9100" },
		},
		{
			name: "empty environment variable is unset",
			file: file,
			env:  map[string]string{"SIGNET_DATA_DIR": ""},
			want: func(c *serverConfig) { *c = fromFile },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadServerConfig(t, tc.file, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			var want serverConfig
			tc.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("config mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConfigErrors: a bad file, variable or flag fails, naming the key.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{name: "unknown key", file: "trust_domian: example.org\n", wantErr: `line 1: unknown field "trust_domian"`},
		{name: "unknown nested in valid file", file: "trust_domain: example.org\nmetrics:\n  listen: x\n", wantErr: `line 2: unknown field "metrics"`},
		{name: "wrong type", file: "admin_uids: root\n", wantErr: "admin_uids"},
		{name: "bad duration", file: "root_ttl: forever\n", wantErr: `line 1: root_ttl: "forever" is not a duration`},
		{name: "duration without a unit", file: "trust_domain: example.org\nintermediate_ttl: 5\n", wantErr: `line 2: intermediate_ttl: "5" has no unit`},
		{name: "wrong type names the key", file: "admin_uids: root\n", wantErr: `line 1: admin_uids: "root" is not a uid`},
		{name: "list for a single value", file: "\n\ntrust_domain: [a, b]\n", wantErr: "line 3: trust_domain: want a single value, not a list"},
		{name: "mapping for a value", file: "listen:\n  host: x\n", wantErr: "line 1: listen: want a value, not a mapping"},
		{name: "key given twice", file: "listen: a:1\nlisten: b:2\n", wantErr: `line 2: mapping key "listen" already defined`},
		{name: "syntax error", file: "trust_domain: [example.org\n", wantErr: "line 1: "},
		{name: "not a mapping", file: "- trust_domain: x\n", wantErr: "line 1: a config file must be a mapping"},
		{name: "two documents", file: "listen: a:1\n---\nlisten: b:2\n", wantErr: "line 3: a second YAML document"},
		{name: "bad environment value", env: map[string]string{"SIGNET_ROOT_TTL": "soon"}, wantErr: "SIGNET_ROOT_TTL"},
		{name: "bad environment uid", env: map[string]string{"SIGNET_ADMIN_UIDS": "1,x"}, wantErr: "SIGNET_ADMIN_UIDS"},
		{name: "bad flag value", args: []string{"--intermediate-ttl", "weekly"}, wantErr: "--intermediate-ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var path string
			if tc.file != "" {
				path = writeFile(t, "server.yaml", tc.file)
			}
			_, err := loadServerConfig(t, path, tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestEveryFlagHasAConfigKey: the server's and the agent's flags are their
// config keys, each with a usage, plus --config and --check-config.
func TestEveryFlagHasAConfigKey(t *testing.T) {
	for _, tc := range []struct {
		command string
		cfg     any
		usages  map[string]string
	}{
		{"server", serverConfig{}, serverUsages},
		{"agent", agentcmd.Config{}, agentcmd.Usages},
	} {
		t.Run(tc.command, func(t *testing.T) {
			keys := map[string]bool{}
			fileKeys := 0 // keys of the file only: no flag
			typ := reflect.TypeOf(tc.cfg)
			for i := range typ.NumField() {
				k := cli.JSONKey(typ.Field(i))
				if k == "" {
					t.Errorf("field %s has no config key", typ.Field(i).Name)
					continue
				}
				if !cli.FileOnly(typ.Field(i)) {
					keys[k] = true
				} else {
					fileKeys++
				}
				if tc.usages[k] == "" {
					t.Errorf("config key %s has no usage text", k)
				}
			}
			for k := range tc.usages {
				if !keys[k] && (fileKeys == 0 || !hasFileKey(typ, k)) {
					t.Errorf("usage for %s, which is not a config key", k)
				}
			}
			// The command's flags are the keys, plus --config,
			// --check-config and --help; -h prints them on stdout.
			var stdout bytes.Buffer
			env := &cliEnv{stdout: &stdout, stderr: io.Discard, getenv: mapEnv(nil)}
			if err := run(context.Background(), env, []string{tc.command, "-h"}); err != nil {
				t.Fatal(err)
			}
			cmd, _, err := newRootCommand(env).Find([]string{tc.command})
			if err != nil {
				t.Fatal(err)
			}
			flags := 0
			cmd.Flags().VisitAll(func(f *pflag.Flag) {
				switch f.Name {
				case "config", "check-config", "help":
					return
				}
				flags++
				if !keys[strings.ReplaceAll(f.Name, "-", "_")] {
					t.Errorf("flag --%s has no config key", f.Name)
				}
				if !strings.Contains(stdout.String(), "--"+f.Name+" ") {
					t.Errorf("-h does not show --%s:\n%s", f.Name, stdout.String())
				}
			})
			if flags != len(keys) {
				t.Errorf("%d flags for %d config keys", flags, len(keys))
			}
		})
	}
}

// TestCheckConfig: --check-config refuses what a start would refuse, with
// the key named, and accepts a good file (durations in days included).
func TestCheckConfig(t *testing.T) {
	env := hostFiles(t)
	dir := t.TempDir()
	notADir := writeFile(t, "file", "x")
	base := "trust_domain: example.org\ndata_dir: " + filepath.Join(dir, "data") + "\n"
	kubeconfig := writeFile(t, "kubeconfig", "current-context: c\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:6443\", insecure-skip-tls-verify: true}\nusers:\n- name: u\n  user: {token: abc}\n")
	readOnly := filepath.Join(dir, "ro")
	os.Mkdir(readOnly, 0o500)
	awsLinked := false
	if _, ok := apiv1.LoadKeyManagerNewFunc(apiv1.AmazonKMS); ok {
		awsLinked = true
	}
	tests := []struct {
		name    string
		command string
		file    string
		env     map[string]string
		skip    bool
		wantErr string
	}{
		{name: "valid, in days", command: "server", file: base + "root_ttl: 730d\nintermediate_ttl: 7d\nmtls_window: 15m\n"},
		{name: "environment in days", command: "server", file: base, env: map[string]string{"SIGNET_ROOT_TTL": "30d", "SIGNET_INTERMEDIATE_TTL": "1d"}},
		{name: "no data dir", command: "server", file: "trust_domain: example.org\n", wantErr: "signet server needs a data directory: give --data-dir DIR (or data_dir in --config)"},
		{name: "data dir is a file", command: "server", file: "data_dir: " + notADir + "\n", wantErr: "data_dir " + notADir + ": " + notADir + " is not a directory"},
		{name: "data dir under a file", command: "server", file: "data_dir: " + notADir + "/data\n", wantErr: notADir + " is not a directory"},
		{name: "data dir not writable", command: "server", file: "data_dir: " + readOnly + "/data\n", skip: os.Getuid() == 0, wantErr: "cannot write to " + readOnly},
		{name: "admin socket under a file", command: "server", file: base + "admin_socket: " + notADir + "/admin.sock\n", wantErr: "admin_socket " + notADir + ": " + notADir + " is not a directory"},
		{name: "agent data dir under a file", command: "agent", file: "insecure_bootstrap: true\ndata_dir: " + notADir + "/x\n", wantErr: "data_dir " + notADir + "/x: " + notADir + " is not a directory"},
		{name: "intermediate longer than root", command: "server", file: base + "root_ttl: 30d\nintermediate_ttl: 60d\n", wantErr: "intermediate_ttl 60d is longer than root_ttl 30d"},
		{name: "intermediate longer than the default root", command: "server", file: base + "intermediate_ttl: 400d\n", wantErr: "intermediate_ttl 400d is longer than root_ttl 365d"},
		{name: "default intermediate longer than root", command: "server", file: base + "root_ttl: 1d\n", wantErr: "intermediate_ttl 7d is longer than root_ttl 1d"},
		{name: "unknown kms type", command: "server", file: base + "kms_uri: vault:secret/x\n", wantErr: `kms_uri "vault:secret/x"`},
		{name: "kms that cannot create keys", command: "server", file: base + "kms_uri: \"yubikey:slot-id=9a\"\n", wantErr: "signet cannot create keys in a yubikey key manager"},
		{name: "kms not linked", command: "server", file: base + "kms_uri: \"awskms:region=us-east-1\"\n", skip: awsLinked, wantErr: "awskms is not linked into this binary: build signet with -tags cloudkms"},
		{name: "pkcs11 without cgo", command: "server", file: base + "kms_uri: \"pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=signet?pin-value=1234\"\n", skip: cgoEnabled, wantErr: "PKCS#11 needs a signet built with cgo"},
		{name: "admin socket too long", command: "server", file: base + "admin_socket: /" + strings.Repeat("s", 120) + "\n", wantErr: "admin_socket \"/sss"},
		{name: "negative window", command: "server", file: base + "mtls_window: -1m\n", wantErr: "mtls_window -1m0s: must be positive"},
		{name: "import cert without key", command: "server", file: base + "import_root_cert: " + notADir + "\n", wantErr: "import_root_cert and import_root_key must be given together"},
		{name: "bad log level", command: "server", file: base + "log_level: loud\n", wantErr: `log_level "loud"`},
		{name: "agent socket too long", command: "agent", file: "insecure_bootstrap: true\nsocket: /" + strings.Repeat("s", 120) + "\n", wantErr: "socket \"/sss"},
		{name: "YAML 1.1 booleans", command: "agent", file: "insecure_bootstrap: yes\n"},
		{name: "not a boolean", command: "agent", file: "insecure_bootstrap: sometimes\n", wantErr: `line 1: insecure_bootstrap: "sometimes" is not true or false`},
		{name: "etcd store", command: "server", file: base + "store: etcd\netcd_endpoints: [http://127.0.0.1:2379, http://127.0.0.2:2379]\netcd_prefix: /signet-a\nserver_name: ca-1\n"},
		{name: "etcd endpoints as a comma list", command: "server", file: base + "store: etcd\netcd_endpoints: http://127.0.0.1:2379,http://127.0.0.2:2379\n"},
		{name: "unknown store", command: "server", file: base + "store: postgres\n", wantErr: `store "postgres": want bolt or etcd`},
		{name: "etcd without endpoints", command: "server", file: base + "store: etcd\n", wantErr: "store etcd needs etcd_endpoints"},
		{name: "etcd keys with bolt", command: "server", file: base + "etcd_endpoints: [http://127.0.0.1:2379]\n", wantErr: `etcd_* keys are set but store is "bolt"`},
		{name: "etcd endpoint not a URL", command: "server", file: base + "store: etcd\netcd_endpoints: [127.0.0.1:2379]\n", wantErr: `etcd_endpoints "127.0.0.1:2379": want a URL`},
		{name: "etcd prefix ending with a slash", command: "server", file: base + "store: etcd\netcd_endpoints: [http://127.0.0.1:2379]\netcd_prefix: /signet/\n", wantErr: `etcd_prefix "/signet/": must start with /`},
		{name: "etcd cert without key", command: "server", file: base + "store: etcd\netcd_endpoints: [https://127.0.0.1:2379]\netcd_cert: " + notADir + "\n", wantErr: "etcd_cert and etcd_key must be given together"},
		{name: "etcd ca not PEM", command: "server", file: base + "store: etcd\netcd_endpoints: [https://127.0.0.1:2379]\netcd_ca: " + notADir + "\n", wantErr: "etcd_ca " + notADir + ": no PEM certificate"},
		{name: "bad server name", command: "server", file: base + "server_name: a/b\n", wantErr: `server_name "a/b": use 1 to 63 letters`},
		{name: "agent socket URI is a path", command: "agent", file: "insecure_bootstrap: true\nsocket: unix:///run/x.sock\n", wantErr: ""},
		// Kubernetes (issue 15).
		{name: "k8s cluster", command: "server", file: base + "k8s_clusters:\n  - name: prod\n    kubeconfig: " + kubeconfig + "\n    service_account_allow_list: [\"signet:agent\"]\n    audience: signet\n"},
		{name: "k8s cluster without a name", command: "server", file: base + "k8s_clusters:\n  - kubeconfig: " + kubeconfig + "\n    service_account_allow_list: [\"signet:agent\"]\n", wantErr: "k8s_clusters item 1: name is required"},
		{name: "k8s cluster without an allow list", command: "server", file: base + "k8s_clusters:\n  - name: prod\n    kubeconfig: " + kubeconfig + "\n", wantErr: `k8s_clusters "prod": service_account_allow_list is required`},
		{name: "k8s cluster allow list item", command: "server", file: base + "k8s_clusters:\n  - name: prod\n    kubeconfig: " + kubeconfig + "\n    service_account_allow_list: [agent]\n", wantErr: `service account "agent": want namespace:name`},
		{name: "k8s cluster unknown key", command: "server", file: base + "k8s_clusters:\n  - name: prod\n    kubecfg: x\n", wantErr: `line 5: unknown field "kubecfg"`},
		{name: "k8s cluster not a mapping", command: "server", file: base + "k8s_clusters: [prod]\n", wantErr: "item 1 must be a mapping"},
		{name: "k8s cluster kubeconfig missing", command: "server", file: base + "k8s_clusters:\n  - name: prod\n    kubeconfig: /nonexistent/kubeconfig\n    service_account_allow_list: [\"signet:agent\"]\n", wantErr: `k8s_clusters "prod": kubeapi: kubeconfig /nonexistent/kubeconfig`},
		{name: "k8s clusters twice", command: "server", file: base + "k8s_clusters:\n  - {name: a, kubeconfig: " + kubeconfig + ", service_account_allow_list: [\"s:a\"]}\n  - {name: a, kubeconfig: " + kubeconfig + ", service_account_allow_list: [\"s:a\"]}\n", wantErr: `cluster "a" is configured twice`},
		{name: "k8s_psat agent", command: "agent", file: "insecure_bootstrap: true\nnode_attestor: k8s_psat\nk8s_cluster: prod\n"},
		{name: "k8s_psat without a cluster", command: "agent", file: "insecure_bootstrap: true\nnode_attestor: k8s_psat\n", wantErr: "node_attestor k8s_psat needs k8s_cluster"},
		{name: "k8s_psat and a join token", command: "agent", file: "insecure_bootstrap: true\nnode_attestor: k8s_psat\nk8s_cluster: prod\njoin_token: x\n", wantErr: "drop join_token"},
		{name: "k8s cluster without k8s_psat", command: "agent", file: "insecure_bootstrap: true\nk8s_cluster: prod\n", wantErr: "give --node-attestor k8s_psat"},
		{name: "unknown workload attestor", command: "agent", file: "insecure_bootstrap: true\nworkload_attestors: unix,docker\n", wantErr: `workload_attestors: unknown attestor "docker" (known: unix, k8s)`},
		{name: "unknown node attestor", command: "agent", file: "insecure_bootstrap: true\nnode_attestor: aws_iid\n", wantErr: `node_attestor "aws_iid": want join_token or k8s_psat`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip {
				t.Skip("not in this build")
			}
			e := maps.Clone(env)
			maps.Copy(e, tc.env)
			out, err := checkConfig(t, tc.command, []byte(tc.file), e)
			if tc.wantErr == "" {
				if err != nil || !strings.Contains(out, "configuration is valid") {
					t.Fatalf("%q, %v; want a valid configuration", out, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzConfigFile: decoding a config file or an entries file never panics,
// whatever the bytes (goccy/go-yaml parses them first).
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"trust_domain: example.org\nroot_ttl: 30d\nadmin_uids: [1, 2]\n",
		"- spiffe_id: spiffe://example.org/a\n  selectors: [unix:uid:1]\n  x509_ttl: 1h\n",
		`[{"spiffe_id": "a", "dns_names": ["x"]}]`,
		"a: &x 1\nb: *x\n", "- !!str 5\n", "---\na: 1\n---\n", "<<: {a: 1}\n", "key: |\n  text\n", "{", "[", "- - -",
	} {
		f.Add([]byte(seed))
	}
	if data, err := os.ReadFile(filepath.Join(deployDir, "config", "server.yaml")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := defaultServerConfig()
		cli.DecodeConfig(data, &cfg)
		acfg := agentcmd.DefaultConfig()
		cli.DecodeConfig(data, &acfg)
		parseEntryFile("fuzz", data)
	})
}

// hasFileKey reports whether typ has the file-only config key k.
func hasFileKey(typ reflect.Type, k string) bool {
	for i := range typ.NumField() {
		if cli.JSONKey(typ.Field(i)) == k && cli.FileOnly(typ.Field(i)) {
			return true
		}
	}
	return false
}
