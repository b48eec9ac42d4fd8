// Package envoy_test checks the example Envoy configurations in this folder
// against Envoy's own API with deploy/internal/envoycheck: every *.yaml must
// parse as a v3 Bootstrap with no unknown fields and pass Envoy's validation
// rules (protoc-gen-validate), including the typed configs of its
// extensions, and its SDS references must name secrets the signet agent
// serves. Nothing imports this folder.
package envoy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-mesh/signet/deploy/internal/envoycheck"
)

// load is the check every example goes through.
var load = envoycheck.Load

func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no *.yaml configs found")
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			y, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			b, err := load(y)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := envoycheck.AgentSocket(b); err != nil {
				t.Error(err)
			}
			if err := envoycheck.CheckSDS(b); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestLoadRejectsBrokenConfigs makes sure the check has teeth: each snippet
// has one deliberate mistake that Envoy would reject.
func TestLoadRejectsBrokenConfigs(t *testing.T) {
	const agent = `
  - name: signet_agent
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: signet_agent
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { pipe: { path: /run/signet/agent.sock } } }
`
	listener := func(filterConfig string) string {
		return `
static_resources:
  listeners:
  - name: outbound
    address: { socket_address: { address: 127.0.0.1, port_value: 15001 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
` + filterConfig + `
  clusters:` + agent
	}
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{
			name:    "valid",
			yaml:    listener("          stat_prefix: out\n          cluster: signet_agent"),
			wantErr: "",
		},
		{
			name:    "typo in a field name",
			yaml:    strings.Replace(listener("          stat_prefix: out\n          cluster: signet_agent"), "filter_chains", "filter_chians", 1),
			wantErr: `unknown field "filter_chians"`,
		},
		{
			name:    "typo inside typed_config",
			yaml:    listener("          stat_prefix: out\n          clustr: signet_agent"),
			wantErr: `unknown field "clustr"`,
		},
		{
			name:    "unregistered extension type",
			yaml:    strings.Replace(listener("          stat_prefix: out\n          cluster: signet_agent"), "tcp_proxy.v3.TcpProxy", "tcp_proxy.v3.TcpProxi", 1),
			wantErr: "TcpProxi",
		},
		{
			name:    "empty stat_prefix inside typed_config",
			yaml:    listener("          stat_prefix: \"\"\n          cluster: signet_agent"),
			wantErr: "StatPrefix",
		},
		{
			name:    "bad enum value",
			yaml:    strings.Replace(listener("          stat_prefix: out\n          cluster: signet_agent"), "type: STATIC", "type: STATICK", 1),
			wantErr: "STATICK",
		},
		{
			name:    "zero connect_timeout",
			yaml:    strings.Replace(listener("          stat_prefix: out\n          cluster: signet_agent"), "connect_timeout: 1s", "connect_timeout: 0s", 1),
			wantErr: "ConnectTimeout",
		},
		{
			name:    "pipe without a path",
			yaml:    strings.Replace(listener("          stat_prefix: out\n          cluster: signet_agent"), "pipe: { path: /run/signet/agent.sock }", "pipe: {}", 1),
			wantErr: "Path",
		},
		{
			name: "invalid protocol options (an Any in a map)",
			yaml: strings.Replace(listener("          stat_prefix: out\n          cluster: signet_agent"), "    connect_timeout: 1s", `    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions`, 1),
			wantErr: "UpstreamProtocolOptions",
		},
		{
			name:    "not YAML",
			yaml:    "static_resources: [",
			wantErr: "converting YAML to JSON",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load([]byte(tt.yaml))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("load: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("load error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
