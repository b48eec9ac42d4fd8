package agentcmd

// Log attribute keys of the records this package writes (the agent's
// components log with their own keys).
const (
	logSocket  = "socket"
	logMetrics = "metrics"
	logHealth  = "health"
)
