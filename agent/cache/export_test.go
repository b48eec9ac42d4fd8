package cache

// Groups reports how many subscriber groups c holds, and how many keys its
// selector index of groups has: both drop to zero once every subscription
// is closed.
func Groups(c *Cache) (groups, indexKeys int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.groups), len(c.groupsBySelector)
}

// SameIntermediates reports whether a and b hold one shared copy of their
// intermediates.
func SameIntermediates(a, b *SVID) bool { return a.intermediates == b.intermediates }
