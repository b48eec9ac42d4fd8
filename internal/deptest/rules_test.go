package deptest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/signet-mesh/signet/internal/deptest"
)

const module = "github.com/signet-mesh/signet/"

// The layering of signet (STYLE.md, "Dependency direction"): the CA and
// the agent never import each other, sharing only proto/, go-spiffe types
// and the leaves under internal/; sds sees the agent only through its own
// interfaces; only the store talks to the database.

func TestCANeverImportsAgent(t *testing.T) {
	t.Parallel()
	deptest.Rule{
		Packages: []string{module + "ca/..."},
		BadDeps: map[string]string{
			module + "agent/...": "the CA and the agent share only proto/, internal/ leaves and go-spiffe types",
			module + "sds/...":   "the SDS server runs in the agent",
			module + "cmd/...":   "cmd wires packages together; nothing imports it",
		},
	}.Check(t)
}

func TestAgentNeverImportsCA(t *testing.T) {
	t.Parallel()
	deptest.Rule{
		Packages: []string{module + "agent/..."},
		BadDeps: map[string]string{
			module + "ca/...":  "the CA and the agent share only proto/, internal/ leaves and go-spiffe types",
			module + "cmd/...": "cmd wires packages together; nothing imports it",
		},
	}.Check(t)
}

func TestSDSImportsNeitherSide(t *testing.T) {
	t.Parallel()
	deptest.Rule{
		Packages: []string{module + "sds/..."},
		BadDeps: map[string]string{
			module + "ca/...":    "sds is given its sources through its own interfaces (cmd passes the agent's cache)",
			module + "agent/...": "sds is given its sources through its own interfaces (cmd passes the agent's cache)",
			module + "cmd/...":   "cmd wires packages together; nothing imports it",
		},
	}.Check(t)
}

func TestOnlyTheStoreTalksToTheDatabase(t *testing.T) {
	t.Parallel()
	deptest.Rule{
		Packages: []string{module + "..."},
		Except:   []string{module + "ca/store/..."},
		BadImports: map[string]string{
			"go.etcd.io/bbolt/...": "only ca/store (and its backends) use the database; everything else goes through store.Store",
			"go.etcd.io/etcd/...":  "only ca/store (and its backends) use the database; everything else goes through store.Store",
		},
	}.Check(t)
}

func TestInternalLeavesStayLeaves(t *testing.T) {
	t.Parallel()
	deptest.Rule{
		Packages: []string{module + "internal/..."},
		BadDeps: map[string]string{
			module + "ca/...":    "internal/ packages are leaves both sides import; a leaf that reaches back up makes a cycle of layers",
			module + "agent/...": "internal/ packages are leaves both sides import; a leaf that reaches back up makes a cycle of layers",
			module + "sds/...":   "internal/ packages are leaves both sides import; a leaf that reaches back up makes a cycle of layers",
			module + "cmd/...":   "cmd wires packages together; nothing imports it",
		},
	}.Check(t)
}

// TestRuleCatchesAnEdge: a rule that the module breaks fails, naming the
// edge and the reason (the guards above would pass vacuously otherwise).
func TestRuleCatchesAnEdge(t *testing.T) {
	t.Parallel()
	rec := &recorder{TB: t}
	deptest.Rule{
		Packages: []string{module + "ca/server"},
		BadDeps:  map[string]string{module + "ca/store": "test reason"},
		BadImports: map[string]string{
			module + "ca/rotation": "direct test reason",
		},
	}.Check(rec)
	want := []string{
		module + "ca/server depends on " + module + "ca/store: test reason",
		module + "ca/server imports " + module + "ca/rotation: direct test reason",
	}
	for _, w := range want {
		found := false
		for _, e := range rec.errs {
			found = found || e == w
		}
		if !found {
			t.Errorf("errors %q lack %q", rec.errs, w)
		}
	}
}

// recorder collects a Check's failures instead of failing the test.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

// TestBinaryStaysLight: every package signet links runs its init and maps
// its code whatever the command, so an agent pays for what the binary
// links (issue 19). Kubernetes is reached through internal/kubeapi's
// hand-written client, and SDS through signet's own subset of Envoy's
// messages (proto/signet/envoy/v1).
func TestBinaryStaysLight(t *testing.T) {
	t.Parallel()
	deptest.Rule{
		Packages: []string{module + "cmd/signet"},
		BadDeps: map[string]string{
			"k8s.io/...":      "Kubernetes client libraries would weigh on every agent, k8s or not: use internal/kubeapi",
			"sigs.k8s.io/...": "Kubernetes client libraries would weigh on every agent, k8s or not: use internal/kubeapi",
			"github.com/envoyproxy/go-control-plane/...": "its generated xDS packages cost megabytes of mapped binary: sds uses proto/signet/envoy/v1",
		},
	}.Check(t)
}

// TestAgentBinaryStaysLight: signet-agent exists so that a node's agent
// maps only the agent's code (issue 19). It links the agent, SDS and the
// command-line plumbing both binaries share (cmd/internal/cli); anything
// of the CA would bring back the weight the binary was split to shed.
func TestAgentBinaryStaysLight(t *testing.T) {
	t.Parallel()
	const why = "signet-agent links only what the agent runs: the CA's code belongs in signet"
	deptest.Rule{
		Packages: []string{module + "cmd/signet-agent", module + "cmd/internal/agentcmd"},
		BadDeps: map[string]string{
			module + "ca/...":                            why,
			module + "cmd/signet":                        "signet-agent shares the agent command through cmd/internal/agentcmd, not signet's main",
			"go.etcd.io/...":                             why + " (bbolt and etcd are the CA's stores)",
			"go.step.sm/crypto/kms/...":                  why + " (the CA's key managers and their cloud KMS clients)",
			"cloud.google.com/...":                       why + " (cloud KMS clients)",
			"github.com/aws/...":                         why + " (cloud KMS clients)",
			"github.com/Azure/...":                       why + " (cloud KMS clients)",
			"go.uber.org/zap":                            why + " (etcd's logger)",
			"go.opentelemetry.io/...":                    why + " (etcd's tracing)",
			"github.com/prometheus/prometheus/...":       why + " (the CA's rule evaluation)",
			"k8s.io/...":                                 "Kubernetes client libraries: the agent uses internal/kubeapi",
			"sigs.k8s.io/...":                            "Kubernetes client libraries: the agent uses internal/kubeapi",
			"github.com/envoyproxy/go-control-plane/...": "sds uses proto/signet/envoy/v1",
			// The YAML library's root package is its reflective decoder,
			// a third of its weight: config files and kubeconfigs are read
			// from the parser's nodes (cmd/internal/cli, internal/kubeapi).
			"github.com/goccy/go-yaml": "YAML is read from goccy/go-yaml/parser's nodes, not through the library's reflective Unmarshal",
		},
	}.Check(t)
}

// TestAgentBinaryLinksNoDeadWeight keeps code out of signet-agent at a
// finer grain than a package: every byte of the binary is mapped by every
// agent (issue 19), and these crept in through a library's broad entry
// point or a generic instantiation. (The image's tags are checked in
// deploy/deploy_test.go.)
func TestAgentBinaryLinksNoDeadWeight(t *testing.T) {
	t.Parallel()
	// The tags of deploy/container/Containerfile.
	syms := deptest.Symbols(t, module+"cmd/signet-agent", "grpcnotrace nethttpomithttp2")
	bad := []struct{ prefix, why string }{
		{"go.step.sm/crypto/pemutil.Serialize", "its switch over every key type and format (OpenSSH, ML-DSA) is ~80 KB: encrypt with pemutil.EncryptPKCS8PrivateKey (agent/nodesvid)"},
		{"slices..dict.pdqsortCmpFunc[" + module, "sorting a slice of one of our structs instantiates a private pdqsort (~14 KB a type): sort pointers or keys"},
		{"crypto/tls.(*Conn).serverHandshake", "crypto/tls's server handshake (~200 KB) is linked by a credential that serves both sides (credentials.NewTLS): the agent only dials, with agent/client's clientTLS"},
		{"slices..dict.pdqsortCmpFunc[github.com/go-jose/go-jose/v4.JSONWebKey]", "sorting JSONWebKeys instantiates a private pdqsort (~14 KB): sort the key IDs (agent/workloadapi)"},
	}
	for _, b := range bad {
		for _, s := range syms {
			if strings.HasPrefix(s, b.prefix) {
				t.Errorf("signet-agent links %s: %s", s, b.why)
				break
			}
		}
	}
}
