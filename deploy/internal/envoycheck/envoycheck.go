// Package envoycheck checks Envoy bootstraps written for signet against
// Envoy's own API: a bootstrap must parse as a v3 Bootstrap with no unknown
// fields and pass Envoy's validation rules (protoc-gen-validate), including
// the typed configs of its extensions; its SDS references must name secrets
// the signet agent serves, fetched over gRPC from the agent's Unix socket.
// The tests of deploy/envoy (standalone bootstraps) and of deploy (the
// bootstraps embedded in the Kubernetes examples) share it, so both are
// held to the same rules. Only tests import it.
package envoycheck

import (
	"errors"
	"fmt"
	"slices"

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

// AgentCluster is the cluster every SDS reference must use.
const AgentCluster = "signet_agent"

// Load parses an Envoy bootstrap in YAML strictly and validates it.
func Load(y []byte) (*bootstrapv3.Bootstrap, error) {
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
	return EachMessage(m.ProtoReflect(), func(inner protoreflect.Message) error {
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

// EachMessage calls fn on every message directly or indirectly inside m,
// without descending into Any (fn gets the Any itself).
func EachMessage(m protoreflect.Message, fn func(protoreflect.Message) error) error {
	visit := func(inner protoreflect.Message) error {
		if err := fn(inner); err != nil {
			return err
		}
		if _, isAny := inner.Interface().(*anypb.Any); isAny {
			return nil
		}
		return EachMessage(inner, fn)
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

// SDSSecrets returns every SdsSecretConfig in m, Any contents included.
func SDSSecrets(m proto.Message) ([]*tlsv3.SdsSecretConfig, error) {
	var out []*tlsv3.SdsSecretConfig
	err := EachMessage(m.ProtoReflect(), func(inner protoreflect.Message) error {
		switch x := inner.Interface().(type) {
		case *tlsv3.SdsSecretConfig:
			out = append(out, x)
		case *anypb.Any:
			content, err := x.UnmarshalNew()
			if err != nil {
				return err
			}
			more, err := SDSSecrets(content)
			if err != nil {
				return err
			}
			out = append(out, more...)
		}
		return nil
	})
	return out, err
}

// CheckSDS checks every SDS reference of b: at least one, each a secret
// name the agent serves, each fetched over gRPC v3 from AgentCluster.
func CheckSDS(b *bootstrapv3.Bootstrap) error {
	secrets, err := SDSSecrets(b)
	if err != nil {
		return err
	}
	if len(secrets) == 0 {
		return errors.New("no SDS secret references")
	}
	var errs []error
	for _, s := range secrets {
		if !server.ValidName(s.GetName()) {
			errs = append(errs, fmt.Errorf("SDS secret %q is not a name the agent serves", s.GetName()))
		}
		cfg := s.GetSdsConfig()
		grpc := cfg.GetApiConfigSource().GetGrpcServices()
		if cfg.GetResourceApiVersion().String() != "V3" || len(grpc) != 1 || grpc[0].GetEnvoyGrpc().GetClusterName() != AgentCluster {
			errs = append(errs, fmt.Errorf("SDS secret %q is not fetched over gRPC v3 from cluster %q: %v", s.GetName(), AgentCluster, cfg))
		}
	}
	return errors.Join(errs...)
}

// AgentSocket checks the SDS cluster (one endpoint, a Unix socket, HTTP/2
// protocol options since SDS is gRPC) and returns its socket path.
func AgentSocket(b *bootstrapv3.Bootstrap) (string, error) {
	i := slices.IndexFunc(b.GetStaticResources().GetClusters(), func(c *clusterv3.Cluster) bool { return c.GetName() == AgentCluster })
	if i < 0 {
		return "", fmt.Errorf("no cluster %q", AgentCluster)
	}
	c := b.GetStaticResources().GetClusters()[i]
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		return "", fmt.Errorf("cluster %q: want exactly one endpoint", AgentCluster)
	}
	path := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe().GetPath()
	if path == "" {
		return "", fmt.Errorf("cluster %q does not point at a Unix socket (pipe)", AgentCluster)
	}
	if _, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
		return "", fmt.Errorf("cluster %q has no HTTP/2 protocol options: gRPC needs HTTP/2", AgentCluster)
	}
	return path, nil
}
