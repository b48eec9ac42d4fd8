package kubeapi

import "encoding/json"

// The user extras of a TokenReview that name the pod a token is bound to
// and the pod's node.
const (
	ExtraPodName  = "authentication.kubernetes.io/pod-name"
	ExtraPodUID   = "authentication.kubernetes.io/pod-uid"
	ExtraNodeName = "authentication.kubernetes.io/node-name"
	ExtraNodeUID  = "authentication.kubernetes.io/node-uid"
)

// ObjectMeta is the part of an object's metadata signet reads.
type ObjectMeta struct {
	Name            string            `json:"name,omitempty"`
	Namespace       string            `json:"namespace,omitempty"`
	UID             string            `json:"uid,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
}

// TokenReview is an authentication.k8s.io/v1 TokenReview.
type TokenReview struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Spec       TokenReviewSpec   `json:"spec"`
	Status     TokenReviewStatus `json:"status,omitzero"`
}

// TokenReviewSpec is what is asked.
type TokenReviewSpec struct {
	Token     string   `json:"token"`
	Audiences []string `json:"audiences,omitempty"`
}

// TokenReviewStatus is the API server's answer.
type TokenReviewStatus struct {
	Authenticated bool     `json:"authenticated,omitempty"`
	User          UserInfo `json:"user,omitzero"`
	Audiences     []string `json:"audiences,omitempty"`
	Error         string   `json:"error,omitempty"`
}

// UserInfo is the reviewed token's user.
type UserInfo struct {
	Username string              `json:"username,omitempty"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

// ExtraValue returns the single value of extra key k, or "" when there is
// not exactly one.
func (u UserInfo) ExtraValue(k string) string {
	if v := u.Extra[k]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// Node is a core/v1 Node.
type Node struct {
	Metadata ObjectMeta `json:"metadata"`
}

// Pod is a core/v1 Pod.
type Pod struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     PodSpec    `json:"spec"`
	Status   PodStatus  `json:"status"`
}

// PodSpec is the part of a pod's spec signet reads.
type PodSpec struct {
	NodeName           string      `json:"nodeName,omitempty"`
	ServiceAccountName string      `json:"serviceAccountName,omitempty"`
	Containers         []Container `json:"containers,omitempty"`
	InitContainers     []Container `json:"initContainers,omitempty"`
}

// Container is a container of a pod's spec.
type Container struct {
	Name  string `json:"name"`
	Image string `json:"image,omitempty"`
}

// PodStatus is the part of a pod's status signet reads.
type PodStatus struct {
	Phase                 string            `json:"phase,omitempty"`
	ContainerStatuses     []ContainerStatus `json:"containerStatuses,omitempty"`
	InitContainerStatuses []ContainerStatus `json:"initContainerStatuses,omitempty"`
	// EphemeralContainerStatuses: a debug container runs in the pod too.
	EphemeralContainerStatuses []ContainerStatus `json:"ephemeralContainerStatuses,omitempty"`
}

// ContainerStatus is one container's status, with the ID the runtime gave
// it ("containerd://<hex>", "cri-o://<hex>", "docker://<hex>").
type ContainerStatus struct {
	Name        string `json:"name"`
	Image       string `json:"image,omitempty"`
	ImageID     string `json:"imageID,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
}

// PodList is a list of pods with the resource version to watch from.
type PodList struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion,omitempty"`
	} `json:"metadata"`
	Items []Pod `json:"items"`
}

// Event types of a watch.
const (
	EventAdded    = "ADDED"
	EventModified = "MODIFIED"
	EventDeleted  = "DELETED"
	EventBookmark = "BOOKMARK"
	EventError    = "ERROR"
)

// PodEvent is one event of a pod watch. For EventError, Status holds the
// API status and Pod is empty.
type PodEvent struct {
	Type   string
	Pod    Pod
	Status *Status
}

type rawEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// Status is a meta/v1 Status: the body of an API error.
type Status struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Code    int    `json:"code,omitempty"`
}
