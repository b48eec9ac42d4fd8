//go:build !signet_testhooks

package server

// testHooksBuilt: a product build; NewForTest refuses.
const testHooksBuilt = false
