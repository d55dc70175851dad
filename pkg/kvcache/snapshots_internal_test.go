package kvcache

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// The snapshot bookkeeping the Snapshotter caches share: requests are
// reserved for the step that reaches them, taken (or returned to the
// spares when dropped meanwhile), recycled, and forgotten after a cut.
func TestSnapshots(t *testing.T) {
	type buf struct{ p int }
	allocs := 0
	alloc := func() (*buf, error) { allocs++; return &buf{}, nil }
	x := newSnapshots[*buf]()

	require.NoError(t, x.request(12, 10, 0, false))
	require.NoError(t, x.request(15, 10, 0, false))
	require.NoError(t, x.request(12, 10, 0, false), "asking twice is one request")
	require.Equal(t, []int{12, 15}, x.want)

	// A step from 10 to 14 reaches 12 only.
	require.NoError(t, x.reserve(10, 14, alloc))
	require.Equal(t, []int{12}, x.stepAt)
	require.EqualError(t, x.request(13, 10, 4, true), "kvcache: snapshot at 13 requested during the step that reaches it")
	require.NoError(t, x.request(20, 10, 4, true), "a later position may be asked for during a step")
	x.take(10, 14, func(s *buf, p int) { s.p = p })
	require.Equal(t, []int{12}, x.positions())
	require.Equal(t, 12, x.at[12].p)
	require.Equal(t, []int{15, 20}, x.want)
	require.Empty(t, x.step)

	// A request dropped during the step leaves its buffer spare.
	require.NoError(t, x.reserve(14, 16, alloc))
	x.drop(15)
	x.take(14, 16, func(*buf, int) { t.Fatal("nothing left to take") })
	require.Len(t, x.free, 1)
	require.Equal(t, 2, allocs)

	// A reserved buffer comes from the spares; unreserve gives it back.
	require.NoError(t, x.reserve(16, 20, alloc))
	require.Equal(t, 2, allocs)
	x.unreserve()
	require.Len(t, x.free, 1)
	require.Equal(t, 2, x.count())

	// keepReserved keeps every reservation, dropped meanwhile or not.
	require.NoError(t, x.reserve(16, 20, alloc))
	x.drop(20)
	x.keepReserved()
	require.Equal(t, []int{12, 20}, x.positions())
	require.Empty(t, x.want)

	require.Equal(t, 12, x.latest(19))
	require.Equal(t, 0, x.latest(11))
	s, err := x.get(alloc)
	require.NoError(t, err)
	x.keep(12, s) // the old snapshot at 12 becomes spare
	require.Len(t, x.free, 1)
	require.Len(t, x.all(), 3)

	require.NoError(t, x.request(30, 20, 0, false))
	x.dropAfter(15)
	require.Equal(t, []int{12}, x.positions())
	require.Empty(t, x.want)

	failing := func() (*buf, error) { return nil, errors.New("out of memory") }
	x.free = nil
	require.NoError(t, x.request(25, 20, 0, false))
	require.EqualError(t, x.reserve(20, 30, failing), "out of memory")
}
