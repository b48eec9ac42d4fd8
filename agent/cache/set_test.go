package cache

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSet drives a set and a map through the same random additions and
// removals (repeats included) and checks they hold the same elements
// after every step, through the move from one element to a map and back
// down to none.
func TestSet(t *testing.T) {
	elems := []*int{new(int), new(int), new(int)}
	r := rand.New(rand.NewPCG(1, 2))
	var s set[*int]
	want := map[*int]struct{}{}
	for step := range 2000 {
		v := elems[r.IntN(len(elems))]
		if r.IntN(2) == 0 {
			s = s.with(v)
			want[v] = struct{}{}
		} else {
			s = s.without(v)
			delete(want, v)
		}
		got := slices.Collect(s.all())
		if s.len() != len(want) || len(got) != len(want) {
			t.Fatalf("step %d: len %d, %d yielded; want %d", step, s.len(), len(got), len(want))
		}
		for _, g := range got {
			if _, ok := want[g]; !ok {
				t.Fatalf("step %d: yielded an element not in the set", step)
			}
		}
		if len(slices.Compact(slices.SortedFunc(slices.Values(got), func(a, b *int) int { return ptrCmp(a, b, elems) }))) != len(got) {
			t.Fatalf("step %d: an element was yielded twice", step)
		}
	}
}

func ptrCmp(a, b *int, order []*int) int {
	return slices.Index(order, a) - slices.Index(order, b)
}

// TestSetZeroValueAndStop: the zero set is empty, and all stops when the
// consumer does.
func TestSetZeroValueAndStop(t *testing.T) {
	var s set[*int]
	if s.len() != 0 || len(slices.Collect(s.all())) != 0 {
		t.Error("zero set is not empty")
	}
	a, b := new(int), new(int)
	s = s.with(a).with(b)
	n := 0
	for range s.all() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("all yielded %d elements after the consumer stopped", n)
	}
}
