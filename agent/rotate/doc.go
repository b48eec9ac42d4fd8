// Package rotate decides when an X509-SVID is due for renewal. Its functions
// are pure: they take the time as an argument and never read a clock, so the
// agent's renewal loop (which owns the clock) and its tests agree on every
// decision.
//
// An SVID is renewed at half of its lifetime, early enough that a CA outage
// of up to half a lifetime goes unnoticed by workloads (DESIGN.md: the agent
// "rotates at half of an SVID's lifetime with jitter"). A node holding many
// SVIDs minted in the same batch would otherwise renew them all at the same
// instant, so the loop schedules each one at RotateAt, which moves the half
// life earlier by a random share of up to MaxJitter of the lifetime:
//
//	next := rotate.RotateAt(leaf.NotBefore, leaf.NotAfter, rand.Float64())
//	timer := clk.NewTimer(next.Sub(clk.Now()))
//	...
//	// A sweep that does not keep per-SVID schedules asks instead:
//	if rotate.ShouldRotate(clk.Now(), leaf.NotBefore, leaf.NotAfter) { ... }
//	// and nothing may hand out an SVID once
//	if rotate.Expired(clk.Now(), leaf.NotAfter) { ... }
//
// RotateAt is never later than the ShouldRotate threshold, so an SVID that
// the jittered schedule renewed early is never reported overdue.
package rotate
