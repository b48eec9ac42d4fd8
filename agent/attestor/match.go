package attestor

// Match reports whether a workload with workloadSelectors is entitled to an
// entry with entrySelectors: every entry selector must be among the
// workload's. An entry with no selectors matches nothing; were it to match
// vacuously, it would hand its identity to every process on the node.
func Match(entrySelectors, workloadSelectors []string) bool {
	if len(entrySelectors) == 0 {
		return false
	}
	// Both lists are short (a workload has about six selectors), so a
	// nested scan beats building a set.
	for _, e := range entrySelectors {
		found := false
		for _, w := range workloadSelectors {
			if e == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
