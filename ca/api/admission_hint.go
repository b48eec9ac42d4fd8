package api

import (
	"math"
	"time"
)

// hintSteps are the mantissas a retry hint is rounded to in each decade:
// about 1.4 times apart, finer than the jitter agents add to a hint.
var hintSteps = [...]float64{1, 1.5, 2, 3, 4, 6, 8, 10}

// roundHint rounds d to the nearest of a few values per decade (1, 1.5,
// 2, 3, 4, 6 or 8 times a power of ten milliseconds). Every refusal's hint
// travels in the response's trailers (the RetryInfo; the message is fixed
// per bound), and HTTP/2 header compression keeps each distinct trailer
// value an agent connection has seen in that connection's table: exact
// hints, a new value nearly every refusal, filled those tables on every
// connection an admission storm touched, some 8 KiB each of the CA's heap
// for as long as the connection lasts. A 10,000-agent rotate-now still
// left 3.7 KiB of table on each connection while the message carried the
// hint too.
func roundHint(d time.Duration) time.Duration {
	ms := float64(d) / float64(time.Millisecond)
	if ms <= 0 {
		return d
	}
	decade := math.Pow(10, math.Floor(math.Log10(ms)))
	m := ms / decade
	best := hintSteps[0]
	for _, s := range hintSteps[1:] {
		if math.Abs(math.Log(m/s)) < math.Abs(math.Log(m/best)) {
			best = s
		}
	}
	return time.Duration(math.Round(best*decade)) * time.Millisecond
}
