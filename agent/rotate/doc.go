// Package rotate owns when each SVID the agent holds is renewed: every
// workload SVID and the node SVID.
//
// The decisions are pure functions of the time they are given (RotateAt,
// ShouldRotate, Expired): they never read a clock, so the Scheduler (which
// owns the clock) and its tests agree on every decision. An SVID is renewed
// at half of its lifetime, early enough that a CA outage of up to half a
// lifetime goes unnoticed by workloads (DESIGN.md: the agent "rotates at
// half of an SVID's lifetime with jitter"). A node holding many SVIDs
// minted in the same batch would otherwise renew them all at the same
// instant, so each is scheduled at RotateAt, which moves the half life
// earlier by a random share of up to MaxJitter of the lifetime:
//
//	next := rotate.RotateAt(leaf.NotBefore, leaf.NotAfter, rnd())
//	// A sweep that does not keep per-SVID schedules asks instead:
//	if rotate.ShouldRotate(clk.Now(), leaf.NotBefore, leaf.NotAfter) { ... }
//	// and nothing may hand out an SVID once
//	if rotate.Expired(clk.Now(), leaf.NotAfter) { ... }
//
// RotateAt is never later than the ShouldRotate threshold, so an SVID that
// the jittered schedule renewed early is never reported overdue.
//
// The Scheduler keeps those times for the agent, with the clock and the
// random source (internal/backoff.Rand) injected, so tests are
// deterministic:
//
//	s := rotate.NewScheduler(rotate.SchedulerConfig{Cache: c, Due: minter.Queue, NodeDue: node.RenewNow, Clock: clk, Rand: rnd})
//	s.Schedule(entryID, leaf)   // after each mint
//	s.ScheduleNode(nodeLeaf)    // after each node SVID renewal
//	err := s.Run(ctx)           // calls Due and NodeDue as SVIDs come due
//
// Run also drops each cached SVID at its expiry (possible only while the CA
// is unreachable), so open streams stop serving it. `signet root activate
// --rotate-now` reaches the agent as a new rotate generation:
// ApplyGeneration pulls every time into a short random window
// (RotateNowMaxSpread), once per generation, remembered across restarts.
package rotate
