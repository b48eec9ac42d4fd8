package rotate_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/signet-mesh/signet/agent/rotate"
)

var (
	t0   = time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)
	hour = t0.Add(time.Hour)
)

func TestShouldRotate(t *testing.T) {
	tests := []struct {
		name        string
		now, nb, na time.Time
		want        bool
	}{
		{name: "fresh", now: t0, nb: t0, na: hour, want: false},
		{name: "just before half life", now: t0.Add(30*time.Minute - time.Nanosecond), nb: t0, na: hour, want: false},
		{name: "at half life", now: t0.Add(30 * time.Minute), nb: t0, na: hour, want: true},
		{name: "past half life", now: t0.Add(45 * time.Minute), nb: t0, na: hour, want: true},
		{name: "expired", now: hour.Add(time.Minute), nb: t0, na: hour, want: true},
		{name: "before not before", now: t0.Add(-time.Minute), nb: t0, na: hour, want: false},
		{name: "zero lifetime", now: t0, nb: t0, na: t0, want: true},
		{name: "negative lifetime", now: t0.Add(-time.Hour), nb: t0, na: t0.Add(-time.Minute), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rotate.ShouldRotate(tt.now, tt.nb, tt.na); got != tt.want {
				t.Errorf("ShouldRotate(%v, %v, %v) = %v, want %v", tt.now, tt.nb, tt.na, got, tt.want)
			}
		})
	}
}

func TestRotateAt(t *testing.T) {
	tests := []struct {
		name   string
		nb, na time.Time
		jitter float64
		want   time.Time
	}{
		{name: "no jitter is half life", nb: t0, na: hour, jitter: 0, want: t0.Add(30 * time.Minute)},
		{name: "half jitter", nb: t0, na: hour, jitter: 0.5, want: t0.Add(27 * time.Minute)},
		{name: "jitter near one", nb: t0, na: hour, jitter: 0.9999999, want: t0.Add(24*time.Minute + 36*time.Microsecond)},
		{name: "jitter one is clamped", nb: t0, na: hour, jitter: 1, want: t0.Add(24*time.Minute + time.Nanosecond)},
		{name: "negative jitter is clamped", nb: t0, na: hour, jitter: -3, want: t0.Add(30 * time.Minute)},
		{name: "NaN jitter is clamped", nb: t0, na: hour, jitter: math.NaN(), want: t0.Add(30 * time.Minute)},
		{name: "zero lifetime", nb: t0, na: t0, jitter: 0.5, want: t0},
		{name: "negative lifetime", nb: t0, na: t0.Add(-time.Hour), jitter: 0.5, want: t0},
		{name: "one week", nb: t0, na: t0.Add(7 * 24 * time.Hour), jitter: 0.5, want: t0.Add(84*time.Hour - 504*time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rotate.RotateAt(tt.nb, tt.na, tt.jitter)
			if !got.Equal(tt.want) {
				t.Errorf("RotateAt(%v, %v, %v) = %v, want %v", tt.nb, tt.na, tt.jitter, got, tt.want)
			}
		})
	}
}

// TestRotateAtWindow sweeps jitter over [0,1) and checks the documented
// window: after 40% and at most 50% of the lifetime, never past the point
// where ShouldRotate turns true.
func TestRotateAtWindow(t *testing.T) {
	lifetimes := []time.Duration{10 * time.Second, time.Hour, 7 * 24 * time.Hour}
	for _, lt := range lifetimes {
		na := t0.Add(lt)
		for i := 0; i < 1000; i++ {
			j := float64(i) / 1000
			got := rotate.RotateAt(t0, na, j)
			lo, hi := t0.Add(lt*4/10), t0.Add(lt/2)
			if !got.After(lo) || got.After(hi) {
				t.Fatalf("lifetime %v jitter %v: RotateAt = %v, want in (%v, %v]", lt, j, got, lo, hi)
			}
			if rotate.ShouldRotate(got, t0, na) && !got.Equal(hi) {
				t.Fatalf("lifetime %v jitter %v: ShouldRotate already true at RotateAt %v", lt, j, got)
			}
			if !rotate.ShouldRotate(hi, t0, na) {
				t.Fatalf("lifetime %v: ShouldRotate false at half life", lt)
			}
		}
	}
}

func TestExpired(t *testing.T) {
	tests := []struct {
		name    string
		now, na time.Time
		want    bool
	}{
		{name: "before", now: hour.Add(-time.Second), na: hour, want: false},
		{name: "at not after is still valid", now: hour, na: hour, want: false},
		{name: "after", now: hour.Add(time.Nanosecond), na: hour, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rotate.Expired(tt.now, tt.na); got != tt.want {
				t.Errorf("Expired(%v, %v) = %v, want %v", tt.now, tt.na, got, tt.want)
			}
		})
	}
}

func ExampleRotateAt() {
	notBefore := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	notAfter := notBefore.Add(time.Hour)
	// jitter would come from rand.Float64(); 0.5 keeps the example stable.
	fmt.Println(rotate.RotateAt(notBefore, notAfter, 0.5).Format(time.Kitchen))
	// Output: 12:27PM
}
