// Package k8sattest attests Kubernetes workloads for the agent (workload
// attestor "k8s"): it finds the caller's container in its cgroup paths and
// the container's pod in a view of the pods bound to the agent's node, and
// gives the caller the pod's selectors.
//
//	pods := k8sattest.NewPods(k8sattest.PodsConfig{Client: kc, NodeName: node})
//	go pods.Run(ctx) // list, then watch spec.nodeName=<node>
//	att := attestor.New(attestor.Config{Plugins: []attestor.Plugin{
//		k8sattest.New(k8sattest.Config{Pods: pods})}})
//	// a caller in a container of pod default/web-1 gets
//	// k8s:ns:default k8s:sa:web k8s:pod-name:web-1 k8s:pod-uid:<uid>
//	// k8s:pod-label:app:web k8s:container-name:app
//	// k8s:container-image:registry.example/web:1 k8s:node-name:node-a
//
// ParseCgroup reads /proc/<pid>/cgroup in the formats Kubernetes nodes
// produce: cgroup v1 and v2, the cgroupfs and systemd drivers, containerd
// ("cri-containerd-<id>.scope"), CRI-O ("crio-<id>.scope") and Docker
// ("docker-<id>.scope", "/docker/<id>"). When the path names the pod too
// ("pod<uid>"), the pod the API server says runs the container must be
// that one.
//
// The agent's own node name comes from its projected token's claims
// (NodeNameFromToken) or its configuration.
//
// # Caveats
//
// A process in no container, in a container of no pod on this node, or
// whose cgroup names another pod than the API server does, gets no k8s
// selectors rather than an error: leaving selectors out can only grant
// less. A container not yet in the view is waited for (Config.Wait,
// DefaultWait), as a pod's process may call the agent before the kubelet
// has reported the container's ID.
//
// The cgroup file is read through the agent/attestor plugin interface,
// between that attestor's two PID-reuse checks: a PID reused meanwhile
// gets nothing.
package k8sattest
