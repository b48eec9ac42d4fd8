package main

import "testing"

// TestMetricSum: the bench adds up the samples of one metric whose labels
// match, and nothing of a metric whose name only starts the same.
func TestMetricSum(t *testing.T) {
	const text = `# HELP signet_node_api_requests_total Node API calls.
# TYPE signet_node_api_requests_total counter
signet_node_api_requests_total{code="OK",method="/signet.node.v1.NodeService/MintX509SVIDs"} 100
signet_node_api_requests_total{code="ResourceExhausted",method="/signet.node.v1.NodeService/MintX509SVIDs"} 7
signet_node_api_requests_total{code="ResourceExhausted",method="/signet.node.v1.NodeService/AttestNode"} 3
signet_admission_refusals_total{bound="in_flight",calls="mint_batches"} 4
signet_admission_refusals_total{bound="signing",calls="mint_batches"} 3
signet_rotate_now_window_seconds 42.5
signet_rotate_now_window_seconds_total 1000
`
	for _, tc := range []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{name: "all series", metric: "signet_node_api_requests_total", want: 110},
		{name: "by code", metric: "signet_node_api_requests_total", labels: []string{`code="ResourceExhausted"`}, want: 10},
		{name: "by code and method", metric: "signet_node_api_requests_total", labels: []string{`code="ResourceExhausted"`, "MintX509SVIDs"}, want: 7},
		{name: "no labels, not a longer name", metric: "signet_rotate_now_window_seconds", want: 42.5},
		{name: "absent", metric: "signet_missing", want: 0},
	} {
		if got := metricSum(text, tc.metric, tc.labels...); got != tc.want {
			t.Errorf("%s: metricSum(%s, %v) = %v, want %v", tc.name, tc.metric, tc.labels, got, tc.want)
		}
	}
	if got := refusedMints(text); got != 7 {
		t.Errorf("refusedMints = %d, want 7", got)
	}
	if got := refusedInFlight(text); got != 4 {
		t.Errorf("refusedInFlight = %d, want 4", got)
	}
}
