package main

import (
	"fmt"

	"github.com/signet-mesh/signet/ca/k8spsat"
	"github.com/signet-mesh/signet/internal/kubeapi"
)

// k8sClusterConfig is one item of the server's k8s_clusters: a Kubernetes
// cluster whose agents attest with k8s_psat.
type k8sClusterConfig struct {
	// Name is what agents give as --k8s-cluster.
	Name string `json:"name"`
	// Kubeconfig reaches the cluster's API server; empty means the
	// in-cluster service account (the server runs in that cluster).
	Kubeconfig string `json:"kubeconfig"`
	// ServiceAccountAllowList names the agents' service accounts,
	// "namespace:name".
	ServiceAccountAllowList []string `json:"service_account_allow_list"`
	// Audience of the agents' projected tokens; default "signet".
	Audience string `json:"audience"`
	// AutoIdentity gives every pod on the cluster's nodes
	// spiffe://<td>/ns/<namespace>/sa/<service-account> with no entry.
	AutoIdentity bool `json:"auto_identity"`
}

// k8sAttestor builds the k8s_psat attestor of the configured clusters, nil
// when there are none. Each error names the cluster and its key.
func (c serverConfig) k8sAttestor() (*k8spsat.Attestor, error) {
	if len(c.K8sClusters) == 0 {
		return nil, nil
	}
	var clusters []k8spsat.Cluster
	for i, kc := range c.K8sClusters {
		where := fmt.Sprintf("k8s_clusters item %d", i+1)
		if kc.Name != "" {
			where = fmt.Sprintf("k8s_clusters %q", kc.Name)
		}
		if kc.Name == "" {
			return nil, fmt.Errorf("%s: name is required (agents give it as --k8s-cluster)", where)
		}
		if len(kc.ServiceAccountAllowList) == 0 {
			return nil, fmt.Errorf("%s: service_account_allow_list is required: name the agents' service accounts as namespace:name", where)
		}
		var (
			client *kubeapi.Client
			err    error
		)
		if kc.Kubeconfig != "" {
			client, err = kubeapi.LoadKubeconfig(kc.Kubeconfig)
		} else {
			client, err = kubeapi.InCluster()
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		clusters = append(clusters, k8spsat.Cluster{
			Name: kc.Name, Client: client, Audience: kc.Audience, AllowList: kc.ServiceAccountAllowList,
			AutoIdentity: kc.AutoIdentity,
		})
	}
	a, err := k8spsat.New(clusters)
	if err != nil {
		return nil, fmt.Errorf("k8s_clusters: %v", err)
	}
	return a, nil
}
