// Package envoy_test checks the example Envoy configurations in this folder
// against Envoy's own API: every *.yaml must parse as a v3 Bootstrap with no
// unknown fields and pass Envoy's validation rules (protoc-gen-validate),
// including the typed configs of its extensions, and its SDS references must
// name secrets the signet agent serves. Nothing imports this folder.
package envoy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/signet-mesh/signet/sds/server"

	// Extensions the configs use, registered so that their "@type" URLs
	// resolve. A config using another extension fails until it is added here.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// agentCluster is the cluster every SDS reference must use.
const agentCluster = "signet_agent"

// load parses an Envoy bootstrap in YAML strictly and validates it.
func load(y []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, fmt.Errorf("converting YAML to JSON: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, b); err != nil {
		return nil, fmt.Errorf("parsing bootstrap: %w", err)
	}
	if err := validate(b); err != nil {
		return nil, err
	}
	return b, nil
}

// validate runs Envoy's validation rules on m and, since those stop at
// google.protobuf.Any, on the content of every Any inside it.
func validate(m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("validating %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
	}
	return eachMessage(m.ProtoReflect(), func(inner protoreflect.Message) error {
		a, ok := inner.Interface().(*anypb.Any)
		if !ok {
			return nil
		}
		content, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("decoding %s: %w", a.GetTypeUrl(), err)
		}
		return validate(content)
	})
}

// eachMessage calls fn on every message directly or indirectly inside m,
// without descending into Any (fn gets the Any itself).
func eachMessage(m protoreflect.Message, fn func(protoreflect.Message) error) error {
	visit := func(inner protoreflect.Message) error {
		if err := fn(inner); err != nil {
			return err
		}
		if _, isAny := inner.Interface().(*anypb.Any); isAny {
			return nil
		}
		return eachMessage(inner, fn)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = visit(v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = visit(mv.Message())
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = visit(v.Message())
		}
		return err == nil
	})
	return err
}

// sdsSecrets returns every SdsSecretConfig in b, Any contents included.
func sdsSecrets(t *testing.T, m proto.Message) []*tlsv3.SdsSecretConfig {
	t.Helper()
	var out []*tlsv3.SdsSecretConfig
	err := eachMessage(m.ProtoReflect(), func(inner protoreflect.Message) error {
		switch x := inner.Interface().(type) {
		case *tlsv3.SdsSecretConfig:
			out = append(out, x)
		case *anypb.Any:
			content, err := x.UnmarshalNew()
			if err != nil {
				return err
			}
			out = append(out, sdsSecrets(t, content)...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

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
			checkAgentCluster(t, b)
			secrets := sdsSecrets(t, b)
			if len(secrets) == 0 {
				t.Fatal("no SDS secret references")
			}
			for _, s := range secrets {
				if !server.ValidName(s.GetName()) {
					t.Errorf("SDS secret %q is not a name the agent serves", s.GetName())
				}
				cfg := s.GetSdsConfig()
				grpc := cfg.GetApiConfigSource().GetGrpcServices()
				if cfg.GetResourceApiVersion().String() != "V3" || len(grpc) != 1 || grpc[0].GetEnvoyGrpc().GetClusterName() != agentCluster {
					t.Errorf("SDS secret %q is not fetched over gRPC v3 from cluster %q: %v", s.GetName(), agentCluster, cfg)
				}
			}
		})
	}
}

// checkAgentCluster checks the SDS cluster: the agent's Unix socket, HTTP/2.
func checkAgentCluster(t *testing.T, b *bootstrapv3.Bootstrap) {
	t.Helper()
	i := slices.IndexFunc(b.GetStaticResources().GetClusters(), func(c *clusterv3.Cluster) bool { return c.GetName() == agentCluster })
	if i < 0 {
		t.Fatalf("no cluster %q", agentCluster)
	}
	c := b.GetStaticResources().GetClusters()[i]
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		t.Fatalf("cluster %q: want exactly one endpoint", agentCluster)
	}
	if path := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe().GetPath(); path == "" {
		t.Errorf("cluster %q does not point at a Unix socket (pipe)", agentCluster)
	}
	if _, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
		t.Errorf("cluster %q has no HTTP/2 protocol options: gRPC needs HTTP/2", agentCluster)
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
