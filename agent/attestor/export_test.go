package attestor

// HashesComputed reports how many executable hashes a has computed (cache
// misses).
func HashesComputed(a *Attestor) int {
	a.hashes.mu.Lock()
	defer a.hashes.mu.Unlock()
	return a.hashes.computed
}

var ParseStartTime = parseStartTime
