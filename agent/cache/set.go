package cache

import "iter"

// set is a set of pointers that holds up to one element without a map.
// The cache keeps one per selector (the entries, the subscriber groups
// that name it) and one per entry (the groups matching it), and most hold
// a single element: a selector naming one workload's uid or pod, an entry
// served to one group. A map for each would cost about 200 bytes; a set
// costs 16 until it holds two elements. The zero value is empty. Sets
// are values: the methods that change one return the new value.
type set[T comparable] struct {
	one  T              // the only element, while many is nil
	many map[T]struct{} // every element, once there were two
}

// with returns s with v added.
func (s set[T]) with(v T) set[T] {
	var zero T
	switch {
	case s.many != nil:
		s.many[v] = struct{}{}
	case s.one == zero || s.one == v:
		s.one = v
	default:
		s.many = map[T]struct{}{s.one: {}, v: {}}
		s.one = zero
	}
	return s
}

// without returns s with v removed.
func (s set[T]) without(v T) set[T] {
	var zero T
	if s.many != nil {
		delete(s.many, v)
	} else if s.one == v {
		s.one = zero
	}
	return s
}

// len returns the number of elements.
func (s set[T]) len() int {
	var zero T
	switch {
	case s.many != nil:
		return len(s.many)
	case s.one != zero:
		return 1
	}
	return 0
}

// all yields the elements, in no particular order. s must not change
// during the iteration.
func (s set[T]) all() iter.Seq[T] {
	return func(yield func(T) bool) {
		if s.many != nil {
			for v := range s.many {
				if !yield(v) {
					return
				}
			}
			return
		}
		var zero T
		if s.one != zero {
			yield(s.one)
		}
	}
}
