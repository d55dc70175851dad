package kvcache_test

import (
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/kvcache/kvsize"
	"github.com/stretchr/testify/require"
)

// compressedSpec is a three-layer compressed cache: sliding only, CSA
// (ratio 4, overlap, indexer keys of 3) and HCA (ratio 8); K=V rows of 2.
func compressedSpec(capacity int) kvcache.CompressedSpec {
	return kvcache.CompressedSpec{DType: kernels.F32, Capacity: capacity, Layers: []kvcache.CompressedLayer{
		{HeadDim: 2, Window: 4},
		{HeadDim: 2, Window: 4, Ratio: 4, Overlap: true, IndexDim: 3},
		{HeadDim: 2, Window: 4, Ratio: 8},
	}}
}

// tokenRows returns n rows of width w whose values name their position.
func tokenRows(t *testing.T, b kernels.Backend, first, n, w int) kernels.Tensor {
	t.Helper()
	x, err := b.Alloc(kernels.F32, n, w)
	require.NoError(t, err)
	v := make([]float32, n*w)
	for i := range v {
		v[i] = float32(first + i/w)
	}
	require.NoError(t, b.Write(x, v))
	return x
}

func rawRows(first, n, w int) []float32 {
	v := make([]float32, n*w)
	for i := range v {
		v[i] = float32(first + i/w)
	}
	return v
}

// feed runs one step of n tokens through every layer the way the model
// does, and checks what each layer's view shows.
func feed(t *testing.T, b kernels.Backend, c *kvcache.Compressed, n int) {
	t.Helper()
	start := c.Len()
	require.NoError(t, c.Begin(n))
	for i, l := range c.Spec().Layers {
		s, err := c.CompressedLayer(i)
		require.NoError(t, err)
		require.Equal(t, start, s.Start())
		require.NoError(t, s.PutWindow(tokenRows(t, b, start, n, l.HeadDim)))
		if l.Ratio > 0 {
			require.NoError(t, s.PutRaw(0, rawRows(start, n, l.RawWidth())))
			raw, first, err := s.Raw(0)
			require.NoError(t, err)
			require.LessOrEqual(t, first, max(0, start-l.RawKeep()), "layer %d holds the pending projections", i)
			require.Equal(t, float32(first), raw[0])
			require.Equal(t, float32(start+n-1), raw[len(raw)-1])
			k := s.NewEntries()
			require.Equal(t, l.Entries(start+n)-l.Entries(start), k)
			if k > 0 {
				require.NoError(t, s.PutEntries(tokenRows(t, b, 1000+l.Entries(start), k, l.HeadDim)))
			}
			if l.IndexDim > 0 {
				require.NoError(t, s.PutRaw(1, rawRows(start, n, l.IndexRawWidth())))
				require.NoError(t, s.PutIndexEntries(rawRows(2000+l.Entries(start), k, l.IndexDim)))
				require.Len(t, s.IndexEntries(), l.Entries(start+n)*l.IndexDim)
			}
		}
		v := s.View()
		got := make([]float32, v.KV.Rows*v.KV.Cols)
		require.NoError(t, b.Read(got, v.KV))
		// Window rows: the step's tokens and the Window-1 before them.
		require.Equal(t, int32(max(0, start-(l.Window-1))), v.WinPos[0])
		require.Equal(t, int32(start+n-1), v.WinPos[len(v.WinPos)-1])
		for j, p := range v.WinPos {
			require.Equal(t, float32(p), got[(v.WinFirst+j)*l.HeadDim], "layer %d window row for position %d", i, p)
		}
		require.Equal(t, l.Entries(start+n), v.Entries)
		for e := 0; e < v.Entries; e++ {
			require.Equal(t, float32(1000+e), got[(v.EntryRow+e)*l.HeadDim], "layer %d entry %d", i, e)
		}
	}
	c.Commit()
	require.Equal(t, start+n, c.Len())
}

func TestCompressedSteps(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	c, err := kvcache.NewCompressed(b, compressedSpec(200))
	require.NoError(t, err)
	for _, n := range []int{6, 1, 1, 13, 2, 1, 1, 1, 9, 30, 1} {
		feed(t, b, c, n)
	}
	// The window buffer is bounded by the window and the largest step, not
	// the context.
	rows := c.WindowRows()
	for range 60 {
		feed(t, b, c, 1)
	}
	require.Equal(t, rows, c.WindowRows())
	require.Greater(t, c.Bytes(), 0)
	require.Equal(t, kvsize.Compressed(c.Spec().Layers, 100, 4), c.Spec().Bytes(100))

	require.ErrorIs(t, c.Begin(1000), kvcache.ErrCacheFull)
	_, err = c.CompressedLayer(0)
	require.Error(t, err, "outside a step")
	require.NoError(t, c.Begin(2))
	s, err := c.CompressedLayer(1)
	require.NoError(t, err)
	require.Error(t, s.PutWindow(tokenRows(t, b, 0, 3, 2)), "three rows for a step of two")
	require.Error(t, s.PutRaw(0, rawRows(0, 1, 8)), "one raw row for two")
	require.NoError(t, s.PutRaw(0, rawRows(c.Len(), 2, 8)))
	require.Error(t, s.PutRaw(0, rawRows(c.Len(), 2, 8)), "written twice")
	_, _, err = s.Raw(1)
	require.NoError(t, err)
	sl, err := c.CompressedLayer(0)
	require.NoError(t, err)
	_, _, err = sl.Raw(0)
	require.Error(t, err, "a sliding layer has no compressor")
	_, err = c.Update(0, kernels.Tensor{}, kernels.Tensor{})
	require.Error(t, err)
	_, err = c.CompressedLayer(7)
	require.Error(t, err)
	// Truncate to Len drops the step in progress; the next step starts
	// where the committed ones ended.
	require.NoError(t, c.Truncate(c.Len()))
	feed(t, b, c, 3)
	c.Release()
	require.Error(t, c.Begin(1))
}

func TestCompressedSpecErrors(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	for _, spec := range []kvcache.CompressedSpec{
		{DType: kernels.F32, Capacity: 0, Layers: compressedSpec(1).Layers},
		{DType: kernels.F32, Capacity: 10},
		{DType: kernels.DType(9), Capacity: 10, Layers: compressedSpec(1).Layers},
		{DType: kernels.F32, Capacity: 10, Layers: []kvcache.CompressedLayer{{HeadDim: 2}}},
		{DType: kernels.F32, Capacity: 10, Layers: []kvcache.CompressedLayer{{HeadDim: 2, Window: 4, IndexDim: 3}}},
	} {
		_, err := kvcache.NewCompressed(b, spec)
		require.Error(t, err, "%+v", spec)
	}
}

// Snapshots keep what a cut back needs once the buffers have moved on:
// the window rows and the pending projections as of the position.
func TestCompressedSnapshots(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	c, err := kvcache.NewCompressed(b, compressedSpec(300))
	require.NoError(t, err)
	require.NoError(t, c.SnapshotAt(0))
	require.NoError(t, c.SnapshotAt(21))
	require.NoError(t, c.SnapshotAt(30))
	for _, n := range []int{10, 15, 40, 1, 1} {
		feed(t, b, c, n)
	}
	require.Equal(t, []int{0, 21, 30}, c.Snapshots())
	require.Equal(t, 30, c.Restorable(35))
	require.Equal(t, 21, c.Restorable(29))
	require.ErrorIs(t, c.Truncate(12), kvcache.ErrNoSnapshot)
	require.Equal(t, 67, c.Len())
	for _, p := range []int{30, 21, 0} {
		require.NoError(t, c.Truncate(p))
		require.Equal(t, p, c.Len())
		// Feeding again checks every view against the positions.
		feed(t, b, c, 7)
		feed(t, b, c, 1)
		require.NoError(t, c.Truncate(p))
	}
	require.Equal(t, []int{0}, c.Snapshots(), "snapshots after the cut point are dropped")
	require.Error(t, c.SnapshotAt(-1))
	c.DropSnapshot(0)
	require.Empty(t, c.Snapshots())
}

// A step that is never committed (the model failed) leaves the cache as
// it was: the next Begin starts over at Len.
func TestCompressedAbort(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	c, err := kvcache.NewCompressed(b, compressedSpec(100))
	require.NoError(t, err)
	feed(t, b, c, 9)
	require.NoError(t, c.Begin(5))
	s, err := c.CompressedLayer(1)
	require.NoError(t, err)
	require.NoError(t, s.PutWindow(tokenRows(t, b, 500, 5, 2)))
	require.NoError(t, s.PutRaw(0, rawRows(500, 5, 8)))
	// No Commit: the next step replaces it.
	feed(t, b, c, 5)
	feed(t, b, c, 3)
}
