package envoycheck

import (
	"strings"
	"testing"
)

// bootstrap is a minimal valid bootstrap: one listener with an mTLS chain
// whose secrets come over SDS from the agent cluster.
const bootstrap = `
static_resources:
  listeners:
  - name: inbound
    address: { socket_address: { address: 0.0.0.0, port_value: 15006 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: default
              sds_config:
                resource_api_version: V3
                api_config_source:
                  api_type: GRPC
                  transport_api_version: V3
                  grpc_services:
                  - envoy_grpc: { cluster_name: signet_agent }
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: in
          cluster: signet_agent
  clusters:
  - name: signet_agent
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    load_assignment:
      cluster_name: signet_agent
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { pipe: { path: /run/signet/agent.sock } } }
`

// TestAgentSocketAndSDS: the checks beyond Envoy's own validation refuse
// what would leave a sidecar without certificates.
func TestAgentSocketAndSDS(t *testing.T) {
	tests := []struct {
		name, old, new string
		wantSocket     string
		wantErr        string
	}{
		{name: "valid", wantSocket: "/run/signet/agent.sock"},
		{name: "no agent cluster", old: "- name: signet_agent", new: "- name: agent", wantErr: `no cluster "signet_agent"`},
		{name: "TCP, not a Unix socket", old: "pipe: { path: /run/signet/agent.sock }", new: "socket_address: { address: 127.0.0.1, port_value: 8081 }", wantErr: "does not point at a Unix socket"},
		{name: "no HTTP/2", old: "envoy.extensions.upstreams.http.v3.HttpProtocolOptions:", new: "envoy.extensions.upstreams.http.v3.HttpProtocolOptionz:", wantErr: "no HTTP/2 protocol options"},
		{name: "SDS from another cluster", old: "cluster_name: signet_agent }", new: "cluster_name: other }", wantErr: `not fetched over gRPC v3 from cluster "signet_agent"`},
		{name: "a secret the agent does not serve", old: "- name: default", new: "- name: mycert", wantErr: `SDS secret "mycert" is not a name the agent serves`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(bootstrap, tc.old, tc.new, 1)
			if tc.old != "" && y == bootstrap {
				t.Fatal("the change did not apply")
			}
			b, err := Load([]byte(y))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			sock, err := AgentSocket(b)
			if err == nil {
				err = CheckSDS(b)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			case tc.wantErr == "" && sock != tc.wantSocket:
				t.Errorf("socket %q, want %q", sock, tc.wantSocket)
			}
		})
	}
}
