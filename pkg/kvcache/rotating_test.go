package kvcache_test

import (
	"math/rand/v2"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/stretchr/testify/require"
)

// A toy attention model drives a Rotating cache and a Standard cache
// through the same steps; every layer's attention output must be
// bit-identical, since the rotating cache shows sliding layers the same
// keys in the same order.

const (
	heads, kvHeads, headDim = 4, 2, 8
	qWidth, kvWidth         = heads * headDim, kvHeads * headDim
)

// windows are the toy model's layers: two sliding windows of different
// sizes and two full-attention layers.
var windows = []int{5, 0, 3, 0}

func rotatingSpec(dt kernels.DType, capacity int) kvcache.RotatingSpec {
	s := kvcache.RotatingSpec{DType: dt, Capacity: capacity, Initial: 4}
	for _, w := range windows {
		s.Layers = append(s.Layers, kvcache.WindowLayer{KV: kvcache.LayerShape{K: kvWidth, V: kvWidth}, Window: w})
	}
	return s
}

func standardSpec(dt kernels.DType, capacity int) kvcache.Spec {
	s := kvcache.Spec{DType: dt, Capacity: capacity}
	for range windows {
		s.Layers = append(s.Layers, kvcache.LayerShape{K: kvWidth, V: kvWidth})
	}
	return s
}

// vecs returns token tok's query, key and value at layer l (deterministic).
func vecs(tok, l int) (q, k, v []float32) {
	r := rand.New(rand.NewPCG(uint64(tok), uint64(l)))
	f := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64())
		}
		return out
	}
	return f(qWidth), f(kvWidth), f(kvWidth)
}

// toy runs one step of the toy model over tokens on cache c (positions
// from c.Len()) and returns every layer's attention output.
func toy(t *testing.T, b kernels.Backend, c kvcache.Cache, tokens []int) [][]float32 {
	t.Helper()
	n := len(tokens)
	require.NoError(t, c.Begin(n))
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(c.Len() + i)
	}
	var outs [][]float32
	for l, w := range windows {
		var qs, ks, vs []float32
		for _, tok := range tokens {
			q, k, v := vecs(tok, l)
			qs, ks, vs = append(qs, q...), append(ks, k...), append(vs, v...)
		}
		q, _ := b.Alloc(kernels.F32, n, qWidth)
		k, _ := b.Alloc(kernels.F32, n, kvWidth)
		v, _ := b.Alloc(kernels.F32, n, kvWidth)
		require.NoError(t, b.Write(q, qs))
		require.NoError(t, b.Write(k, ks))
		require.NoError(t, b.Write(v, vs))
		view, err := c.Update(l, k, v)
		require.NoError(t, err)
		o, _ := b.Alloc(kernels.F32, n, qWidth)
		b.Attention(o, q, view.K, view.V, kernels.Attention{
			Heads: heads, KVHeads: kvHeads, HeadDim: headDim, Scale: 0.35,
			QPos: pos, NumKeys: view.NumKeys, KPos: view.KPos, Causal: true, Window: w,
		})
		out := make([]float32, n*qWidth)
		require.NoError(t, b.Read(out, o))
		outs = append(outs, out)
	}
	c.Commit()
	return outs
}

// pair steps a rotating and a standard cache together.
type pair struct {
	t    *testing.T
	b    kernels.Backend
	rot  *kvcache.Rotating
	std  *kvcache.Standard
	next int // next token id
}

func newPair(t *testing.T, b kernels.Backend, dt kernels.DType, capacity int) *pair {
	rot, err := kvcache.NewRotating(b, rotatingSpec(dt, capacity))
	require.NoError(t, err)
	std, err := kvcache.NewStandard(b, standardSpec(dt, capacity))
	require.NoError(t, err)
	return &pair{t: t, b: b, rot: rot, std: std, next: 1000}
}

func (p *pair) step(n int) {
	p.t.Helper()
	tokens := make([]int, n)
	for i := range tokens {
		tokens[i] = p.next
		p.next++
	}
	at := p.rot.Len()
	got := toy(p.t, p.b, p.rot, tokens)
	want := toy(p.t, p.b, p.std, tokens)
	for l := range windows {
		require.Equal(p.t, want[l], got[l], "layer %d (window %d), step of %d at position %d: rotating differs from standard", l, windows[l], n, at)
	}
}

func (p *pair) truncate(n int) {
	p.t.Helper()
	require.NoError(p.t, p.rot.Truncate(n))
	require.NoError(p.t, p.std.Truncate(n))
	require.Equal(p.t, n, p.rot.Len())
}

func TestRotatingMatchesStandard(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 2})
	defer b.Close()
	for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			p := newPair(t, b, dt, 400)
			// Steps smaller and larger than the windows, decoding runs
			// that make the buffers move their kept rows to the front, and
			// a long chunk that grows them.
			for _, n := range []int{7, 1, 1, 2, 12, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 40, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1} {
				p.step(n)
			}
			// Memory is bounded by the window and the largest step, not
			// the context: keep = 4, largest step 40.
			require.LessOrEqual(t, p.rot.WindowRows(), 2*4+40)
			for range 200 {
				p.step(1)
			}
			require.LessOrEqual(t, p.rot.WindowRows(), 2*4+40)
			require.Equal(t, p.std.Len(), p.rot.Len())
		})
	}
}

func TestRotatingTruncateAndSnapshots(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	p := newPair(t, b, kernels.F32, 400)
	p.step(30)
	p.step(1)
	// Cutting back inside the buffers is exact.
	require.Equal(t, 27, p.rot.Restorable(27))
	p.truncate(27)
	p.step(3)
	p.step(1)

	// A snapshot requested ahead is taken by the step that reaches it,
	// here in the middle of a step.
	require.NoError(t, p.rot.SnapshotAt(40))
	require.NoError(t, p.rot.SnapshotAt(p.rot.Len())) // taken at once
	at := p.rot.Len()
	p.step(12)
	require.Equal(t, []int{at, 40}, p.rot.Snapshots())
	for range 60 {
		p.step(1)
	}
	// Far past the window, position 40 is gone from the buffers: only
	// the snapshot restores it, and the continuation is exact.
	require.Equal(t, 40, p.rot.Restorable(45))
	require.Equal(t, at, p.rot.Restorable(39))
	require.Equal(t, 0, p.rot.Restorable(at-1))
	before := p.rot.Len()
	err := p.rot.Truncate(45)
	require.ErrorIs(t, err, kvcache.ErrNoSnapshot)
	require.Equal(t, before, p.rot.Len(), "a failed truncation changes nothing")
	p.step(1)
	p.truncate(40)
	require.Equal(t, []int{at, 40}, p.rot.Snapshots(), "the restored snapshot stays")
	for range 10 {
		p.step(1)
	}
	p.step(9)
	// Restore the earlier snapshot too, then cut to nothing.
	p.truncate(at)
	require.Equal(t, []int{at}, p.rot.Snapshots(), "snapshots after the cut are dropped")
	p.step(5)
	p.truncate(0)
	p.step(6)

	// Requests and drops.
	require.Error(t, p.rot.SnapshotAt(3), "a position already passed")
	require.NoError(t, p.rot.SnapshotAt(10))
	p.rot.DropSnapshot(10)
	p.step(8)
	require.Empty(t, p.rot.Snapshots())
	require.Equal(t, p.rot.Len(), p.rot.Restorable(1000))
}

func TestRotatingAbortedStep(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	p := newPair(t, b, kernels.F32, 100)
	p.step(20)
	for range 9 {
		p.step(1)
	}
	// A step that updates some layers, then is dropped, leaves nothing.
	require.NoError(t, p.rot.SnapshotAt(31))
	require.NoError(t, p.rot.Begin(30))
	k, _ := b.Alloc(kernels.F32, 30, kvWidth)
	_, err := p.rot.Update(0, k, k)
	require.NoError(t, err)
	_, err = p.rot.Update(1, k, k)
	require.NoError(t, err)
	require.NoError(t, p.rot.Truncate(p.rot.Len()))
	require.Equal(t, 29, p.rot.Len())
	p.step(4) // takes the snapshot at 31
	require.Equal(t, []int{31}, p.rot.Snapshots())
	p.step(1)

	// A full cache refuses the step and keeps its state.
	require.ErrorIs(t, p.rot.Begin(100), kvcache.ErrCacheFull)
	p.step(1)
}

func TestRotatingMemoryAndMisuse(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	spec := rotatingSpec(kernels.F16, 10000)
	c, err := kvcache.NewRotating(b, spec)
	require.NoError(t, err)
	for i := 0; i < 2000; i++ {
		n := 1
		if i == 0 {
			n = 16
		}
		require.NoError(t, c.Begin(n))
		k, _ := b.Alloc(kernels.F32, n, kvWidth)
		for l := range windows {
			_, err := c.Update(l, k, k)
			require.NoError(t, err)
		}
		c.Commit()
	}
	// Sliding layers hold at most 2·keep + the largest step; full layers
	// hold the sequence.
	require.LessOrEqual(t, c.WindowRows(), 2*4+16)
	full := spec.FullBytesPerToken() * 2016
	require.LessOrEqual(t, c.Bytes(), 2*full+c.WindowRows()*spec.SlidingBytesPerRow())
	require.Equal(t, 2*2*kvWidth*2, spec.SlidingBytesPerRow())

	x, _ := b.Alloc(kernels.F32, 2, kvWidth)
	_, err = c.Update(0, x, x)
	require.Error(t, err, "Update outside a step")
	require.NoError(t, c.Begin(1))
	_, err = c.Update(0, x, x)
	require.Error(t, err, "two rows for a one-token step")
	_, err = c.Update(9, x.Row(0), x.Row(0))
	require.Error(t, err, "layer out of range")
	require.Error(t, c.Begin(0))
	require.Error(t, c.Truncate(c.Len()+1))
	c.Release()
	require.Error(t, c.Begin(1))
	require.Error(t, c.SnapshotAt(0))

	_, err = kvcache.NewRotating(b, kvcache.RotatingSpec{DType: kernels.F32, Capacity: 4})
	require.Error(t, err, "no layers")
	_, err = kvcache.NewRotating(b, kvcache.RotatingSpec{Layers: []kvcache.WindowLayer{{KV: kvcache.LayerShape{K: 2, V: 2}, Window: -1}}, DType: kernels.F32, Capacity: 4})
	require.Error(t, err, "negative window")

	// Only sliding layers, window 1 (nothing kept between steps).
	one, err := kvcache.NewRotating(b, kvcache.RotatingSpec{Layers: []kvcache.WindowLayer{{KV: kvcache.LayerShape{K: 2, V: 2}, Window: 1}}, DType: kernels.F32, Capacity: 50})
	require.NoError(t, err)
	for i := 0; i < 40; i++ {
		require.NoError(t, one.Begin(1))
		y, _ := b.Alloc(kernels.F32, 1, 2)
		view, err := one.Update(0, y, y)
		require.NoError(t, err)
		require.Equal(t, 1, view.NumKeys)
		require.Equal(t, []int32{int32(i)}, view.KPos)
		one.Commit()
	}
	require.LessOrEqual(t, one.WindowRows(), 2)
}
