package agentcmd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/signet-mesh/signet/agent/attestor"
	"github.com/signet-mesh/signet/agent/k8sattest"
	"github.com/signet-mesh/signet/internal/kubeapi"
)

// k8sWorkload is the agent's Kubernetes workload attestor and the pod view
// it reads; nil when workload_attestors does not name k8s.
type k8sWorkload struct {
	pods     *k8sattest.Pods
	attestor *k8sattest.Attestor
}

func (k *k8sWorkload) plugins() []attestor.Plugin {
	if k == nil {
		return nil
	}
	return []attestor.Plugin{k.attestor}
}

// run keeps the pod view current until ctx ends.
func (k *k8sWorkload) run(ctx context.Context) error {
	if k == nil {
		return nil
	}
	return k.pods.Run(ctx)
}

// k8sWorkloadAttestor builds the k8s workload attestor that
// workload_attestors asks for, naming the key of any mistake.
func (c Config) k8sWorkloadAttestor(getenv func(string) string, logger *slog.Logger) (*k8sWorkload, error) {
	if k8s, err := c.wantsK8sWorkloads(); err != nil || !k8s {
		return nil, err
	}
	node := c.K8sNodeName
	if node == "" {
		token, err := kubeapi.ReadTokenFile(c.K8sTokenFile)
		if err != nil {
			return nil, fmt.Errorf("workload_attestors k8s: no k8s_node_name and no token to read it from: %v", err)
		}
		if node, err = k8sattest.NodeNameFromToken(token); err != nil {
			return nil, fmt.Errorf("workload_attestors k8s: %v", err)
		}
	}
	var (
		client *kubeapi.Client
		err    error
	)
	if c.K8sKubeconfig != "" {
		client, err = kubeapi.LoadKubeconfig(c.K8sKubeconfig)
	} else {
		client, err = kubeapi.InCluster()
	}
	if err != nil {
		return nil, fmt.Errorf("workload_attestors k8s: %v", err)
	}
	pods := k8sattest.NewPods(k8sattest.PodsConfig{Client: client, NodeName: node, Logger: logger})
	return &k8sWorkload{
		pods:     pods,
		attestor: k8sattest.New(k8sattest.Config{Pods: pods, ProcRoot: cgroupProcRoot(getenv), Logger: logger}),
	}, nil
}

// wantsK8sWorkloads reads workload_attestors: whether it names k8s, and
// an error naming an unknown attestor.
func (c Config) wantsK8sWorkloads() (bool, error) {
	var k8s bool
	for a := range strings.SplitSeq(c.WorkloadAttestors, ",") {
		switch a = strings.TrimSpace(a); a {
		case "", "unix":
		case "k8s":
			k8s = true
		default:
			return false, fmt.Errorf("workload_attestors: unknown attestor %q (known: unix, k8s)", a)
		}
	}
	return k8s, nil
}
