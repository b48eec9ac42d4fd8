//go:build signet_testhooks

package server

// testHooksBuilt: this binary was built for end-to-end tests.
const testHooksBuilt = true
