package kvcache

import (
	"fmt"
	"slices"
)

// snapshots is the bookkeeping the Snapshotter caches (Rotating, Hybrid,
// Compressed) share: the state kept per position, the positions requested
// but not reached yet, spare state buffers, and the buffers reserved for
// requested positions inside the step in progress. S is a cache's copy of
// its state as of one position; only the cache knows how to fill one.
type snapshots[S any] struct {
	at   map[int]S
	want []int // ascending
	free []S
	// step holds the buffers reserved by the step in progress, stepAt
	// the positions they were reserved for.
	step   []S
	stepAt []int
}

func newSnapshots[S any]() snapshots[S] { return snapshots[S]{at: map[int]S{}} }

// count is the number of state buffers held: kept, spare and reserved.
func (x *snapshots[S]) count() int { return len(x.at) + len(x.free) + len(x.step) }

// all returns every state buffer held: spare, reserved and kept.
func (x *snapshots[S]) all() []S {
	out := slices.Clone(x.free)
	out = append(out, x.step...)
	for _, s := range x.at {
		out = append(out, s)
	}
	return out
}

// get returns a spare buffer, or a new one from alloc.
func (x *snapshots[S]) get(alloc func() (S, error)) (S, error) {
	if n := len(x.free); n > 0 {
		s := x.free[n-1]
		x.free = x.free[:n-1]
		return s, nil
	}
	return alloc()
}

// keep stores s as the snapshot at p, recycling one already there.
func (x *snapshots[S]) keep(p int, s S) {
	if old, ok := x.at[p]; ok {
		x.free = append(x.free, old)
	}
	x.at[p] = s
}

// positions lists the positions with a snapshot, ascending.
func (x *snapshots[S]) positions() []int {
	out := make([]int, 0, len(x.at))
	for p := range x.at {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// drop forgets the snapshot at pos and cancels a request for it.
func (x *snapshots[S]) drop(pos int) {
	if s, ok := x.at[pos]; ok {
		delete(x.at, pos)
		x.free = append(x.free, s)
	}
	x.want = slices.DeleteFunc(x.want, func(p int) bool { return p == pos })
}

// dropAfter forgets every snapshot and request after n (a cut back to n).
func (x *snapshots[S]) dropAfter(n int) {
	for p := range x.at {
		if p > n {
			x.drop(p)
		}
	}
	x.want = slices.DeleteFunc(x.want, func(p int) bool { return p > n })
}

// latest returns the latest snapshot position ≤ n, or 0.
func (x *snapshots[S]) latest(n int) int {
	best := 0
	for p := range x.at {
		if p <= n && p > best {
			best = p
		}
	}
	return best
}

// request asks for a snapshot at pos, after the cache's held tokens, for
// the step that reaches it to take; pending and inStep describe the step in
// progress, whose positions are too late to ask for. A position already
// kept or asked for is no new request.
func (x *snapshots[S]) request(pos, held, pending int, inStep bool) error {
	if _, ok := x.at[pos]; ok || slices.Contains(x.want, pos) {
		return nil
	}
	if inStep && pos <= held+pending {
		return fmt.Errorf("kvcache: snapshot at %d requested during the step that reaches it", pos)
	}
	x.want = append(x.want, pos)
	slices.Sort(x.want)
	return nil
}

// reserve takes a buffer (get) for every requested position in (from, to]
// — the positions a step from from to to reaches — before the step runs,
// so that it cannot fail for memory half-way. On error the buffers already
// reserved stay reserved; unreserve returns them.
func (x *snapshots[S]) reserve(from, to int, alloc func() (S, error)) error {
	for _, p := range x.want {
		if p > from && p <= to {
			s, err := x.get(alloc)
			if err != nil {
				return err
			}
			x.step = append(x.step, s)
			x.stepAt = append(x.stepAt, p)
		}
	}
	return nil
}

// unreserve returns the step's reserved buffers to the spares (a step that
// ends without taking them).
func (x *snapshots[S]) unreserve() {
	x.free = append(x.free, x.step...)
	x.step, x.stepAt = x.step[:0], x.stepAt[:0]
}

// take, after a step from from to to, fills (copyOut) and keeps a reserved
// buffer for every position in (from, to] still requested, in order; the
// buffers of requests dropped during the step return to the spares.
func (x *snapshots[S]) take(from, to int, copyOut func(s S, p int)) {
	var taken []int
	for _, p := range x.want {
		if p > from && p <= to {
			s := x.step[len(taken)]
			copyOut(s, p)
			x.keep(p, s)
			taken = append(taken, p)
		}
	}
	x.want = slices.DeleteFunc(x.want, func(p int) bool { return slices.Contains(taken, p) })
	x.free = append(x.free, x.step[len(taken):]...)
	x.step, x.stepAt = x.step[:0], x.stepAt[:0]
}

// keepReserved keeps every reserved buffer as the snapshot of the position
// it was reserved for (a cache that fills them while the step runs).
func (x *snapshots[S]) keepReserved() {
	for i, p := range x.stepAt {
		x.keep(p, x.step[i])
		x.want = slices.DeleteFunc(x.want, func(q int) bool { return q == p })
	}
	x.step, x.stepAt = x.step[:0], x.stepAt[:0]
}
