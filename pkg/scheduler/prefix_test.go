package scheduler

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func seqOf(n int, start int32) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = start + int32(i)
	}
	return s
}

func cacheWith(f *fakeModel, toks []int32) *fakeCache {
	c, _ := f.NewCache(0, 0)
	fc := c.(*fakeCache)
	fc.toks = append(fc.toks, toks...)
	return fc
}

func nodes(n *node) int {
	total := 1
	for _, c := range n.children {
		total += nodes(c)
	}
	return total
}

func TestPrefixCache(t *testing.T) {
	f := newFake(1000, 4096)
	p := newPrefixCache(4)
	a := seqOf(10, 1)                           // 1..10
	b := append(seqOf(6, 1), seqOf(10, 100)...) // shares 6 with a
	p.put(a, cacheWith(f, a), 10)
	p.put(b, cacheWith(f, b), 16)
	require.Equal(t, 2, p.Len())
	require.EqualValues(t, 26, p.bytes)

	tests := []struct {
		name   string
		prompt []int32
		want   []int32 // the entry found, nil for none
		n      int
	}{
		{"extends a", append(seqOf(10, 1), 500, 501), a, 10},
		{"exactly a: one token left to run", seqOf(10, 1), a, 9},
		{"extends b", append(append([]int32{}, b...), 7), b, 16},
		{"shares one block only", append(seqOf(4, 1), 900, 901, 902), nil, 0}, // less than half of either
		{"shorter than a block", seqOf(3, 1), nil, 0},
		{"unrelated", seqOf(20, 400), nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, n := p.lookup(tc.prompt)
			if tc.want == nil {
				require.Nil(t, e)
				return
			}
			require.NotNil(t, e)
			require.Equal(t, tc.want, e.tokens)
			require.Equal(t, tc.n, n)
		})
	}

	// Taking an entry removes it and prunes its trie nodes.
	e, _ := p.lookup(append(append([]int32{}, b...), 7))
	c := p.take(e)
	require.Equal(t, 16, c.Len())
	require.Equal(t, 1, p.Len())
	require.EqualValues(t, 10, p.bytes)
	require.Equal(t, 1+2, nodes(p.root), "root and a's two blocks")

	// A longer sequence with a as its prefix replaces it.
	longer := append(seqOf(10, 1), 77, 78, 79)
	p.put(longer, cacheWith(f, longer), 13)
	require.Equal(t, 1, p.Len())
	require.Equal(t, longer, p.lru.Front().Value.(*entry).tokens)
	require.Equal(t, 1+3, nodes(p.root))

	// Least recently used first out.
	p.put(b, c, 16)
	require.EqualValues(t, 13, p.evictOldest())
	require.Equal(t, b, p.lru.Front().Value.(*entry).tokens)
	p.clear()
	require.Zero(t, p.Len())
	require.Zero(t, p.bytes)
	require.Equal(t, 1, nodes(p.root))
	require.Zero(t, f.liveCaches(), "every cache released")
}

// A hybrid cache is reusable only up to a snapshot, and a longer sequence
// does not replace a shorter one it cannot be cut back to.
func TestPrefixCacheSnapshots(t *testing.T) {
	f := newFake(1000, 4096)
	h := hybridFake{f}
	p := newPrefixCache(4)
	mk := func(toks []int32, snaps ...int) *snapCache {
		c, _ := h.NewCache(0, 0)
		sc := c.(*snapCache)
		sc.toks = append(sc.toks, toks...)
		for _, s := range snaps {
			sc.snaps[s] = true
		}
		return sc
	}
	a := seqOf(12, 1)
	p.put(a, mk(a, 8), 1)
	e, n := p.lookup(append(seqOf(11, 1), 99))
	require.NotNil(t, e)
	require.Equal(t, 8, n, "cut back to the snapshot at 8, not the 11 shared tokens")
	longer := append(seqOf(12, 1), 5, 6, 7, 8)
	p.put(longer, mk(longer), 1)
	require.Equal(t, 2, p.Len(), "longer cannot be cut back to 12, so a stays")
	p.clear()
	require.Zero(t, f.liveCaches())
}
