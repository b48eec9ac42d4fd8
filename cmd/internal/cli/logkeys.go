package cli

// Log attribute keys of the records this package writes.
const logReason = "reason"
