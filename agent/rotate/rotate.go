package rotate

import (
	"math"
	"time"
)

// MaxJitter is the largest share of an SVID's lifetime by which RotateAt
// moves renewal ahead of the half life. A tenth spreads a batch of SVIDs
// minted together over a window long enough to smooth the load on the CA
// (six minutes for the default one-hour SVID) while still renewing with
// 40% of the lifetime left.
const MaxJitter = 0.1

// ShouldRotate reports whether an SVID valid from notBefore to notAfter has
// reached half of its lifetime at now. An SVID with no lifetime (notAfter
// not after notBefore) is always due.
func ShouldRotate(now, notBefore, notAfter time.Time) bool {
	return !now.Before(halfLife(notBefore, notAfter))
}

// RotateAt returns when to renew an SVID valid from notBefore to notAfter:
// its half life, moved earlier by jitter × MaxJitter of its lifetime. The
// caller supplies jitter, uniformly random in [0,1), so that the function
// stays pure; values outside that range are clamped into it. The result is
// in (notBefore + 0.4·lifetime, notBefore + 0.5·lifetime].
func RotateAt(notBefore, notAfter time.Time, jitter float64) time.Time {
	lifetime := notAfter.Sub(notBefore)
	if lifetime <= 0 {
		return notBefore
	}
	switch {
	case jitter < 0 || jitter != jitter: // negative or NaN
		jitter = 0
	case jitter >= 1:
		jitter = math.Nextafter(1, 0)
	}
	early := time.Duration(float64(lifetime) * MaxJitter * jitter)
	return halfLife(notBefore, notAfter).Add(-early)
}

// Expired reports whether a certificate that expires at notAfter has expired
// at now. As in crypto/x509, a certificate is still valid at the instant
// notAfter itself.
func Expired(now, notAfter time.Time) bool {
	return now.After(notAfter)
}

func halfLife(notBefore, notAfter time.Time) time.Time {
	lifetime := notAfter.Sub(notBefore)
	if lifetime <= 0 {
		return notBefore
	}
	return notBefore.Add(lifetime / 2)
}
