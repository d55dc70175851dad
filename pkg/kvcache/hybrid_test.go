package kvcache_test

import (
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/stretchr/testify/require"
)

// The fake linear layer below keeps, as its state, the sum of the tokens
// seen so far (every element of the recurrent state) and, as its
// convolution state, the last three tokens — so the state as of any
// position is known exactly.

const (
	convRows, channels   = 3, 2
	stateRows, stateCols = 2, 3
)

func hybridSpec(capacity int) kvcache.HybridSpec {
	lin := &kvcache.LinearShape{ConvRows: convRows, Channels: channels, StateRows: stateRows, StateCols: stateCols}
	return kvcache.HybridSpec{
		Layers: []kvcache.HybridLayer{{Linear: lin}, {Linear: lin}, {KV: kvcache.LayerShape{K: 4, V: 4}}, {Linear: lin}},
		DType:  kernels.F32, Capacity: capacity, Initial: 2,
	}
}

func fill(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// wantState returns the fake layer's state after tokens.
func wantState(layer int, tokens []int) (conv, state []float32) {
	sum := 0
	for _, t := range tokens {
		sum += t
	}
	conv = make([]float32, convRows*channels)
	for r := 0; r < convRows; r++ {
		i := len(tokens) - convRows + r
		if i >= 0 {
			conv[r*channels] = float32(tokens[i])
			conv[r*channels+1] = float32(tokens[i] + layer)
		}
	}
	return conv, fill(stateRows*stateCols, float32(sum+layer*len(tokens)))
}

// linearStep plays a linear layer over the step's tokens, given the tokens
// before the step, honouring the view's snapshot cuts.
func linearStep(t *testing.T, b kernels.Backend, v kvcache.LinearView, layer int, before, step []int) {
	t.Helper()
	// The layer must find the state it left.
	conv := make([]float32, convRows*channels)
	state := make([]float32, stateRows*stateCols)
	require.NoError(t, b.Read(conv, v.Conv))
	require.NoError(t, b.Read(state, v.State))
	wc, ws := wantState(layer, before)
	require.Equal(t, wc, conv, "layer %d: convolution state before the step", layer)
	require.Equal(t, ws, state, "layer %d: recurrent state before the step", layer)
	write := func(c, s kernels.Tensor, upto int) {
		all := append(append([]int(nil), before...), step[:upto]...)
		wc, ws := wantState(layer, all)
		require.NoError(t, b.Write(c, wc))
		require.NoError(t, b.Write(s, ws))
	}
	for i, cut := range v.Cuts {
		write(v.SnapConv[i], v.SnapState[i], cut)
	}
	write(v.NewConv, v.NewState, len(step))
}

// runStep runs one step of tokens through every layer of c.
func runStep(t *testing.T, b kernels.Backend, c *kvcache.Hybrid, history *[]int, step []int, skip ...int) {
	t.Helper()
	require.NoError(t, c.Begin(len(step)))
	spec := hybridSpec(0)
	for l, layer := range spec.Layers {
		if layer.Linear == nil {
			k, err := b.Alloc(kernels.F32, len(step), 4)
			require.NoError(t, err)
			vals := make([]float32, len(step)*4)
			for i, tok := range step {
				vals[i*4] = float32(tok)
			}
			require.NoError(t, b.Write(k, vals))
			view, err := c.Update(l, k, k)
			require.NoError(t, err)
			require.Equal(t, len(*history)+len(step), view.NumKeys)
			continue
		}
		if len(skip) > 0 && skip[0] == l {
			continue
		}
		v, err := c.LinearState(l)
		require.NoError(t, err)
		linearStep(t, b, v, l, *history, step)
	}
	c.Commit()
	*history = append(*history, step...)
}

func checkState(t *testing.T, b kernels.Backend, c *kvcache.Hybrid, history []int) {
	t.Helper()
	require.Equal(t, len(history), c.Len())
	// A one-token step shows every layer's state (linearStep checks it).
	require.NoError(t, c.Begin(1))
	for l, layer := range hybridSpec(0).Layers {
		if layer.Linear == nil {
			continue
		}
		v, err := c.LinearState(l)
		require.NoError(t, err)
		conv := make([]float32, convRows*channels)
		state := make([]float32, stateRows*stateCols)
		require.NoError(t, b.Read(conv, v.Conv))
		require.NoError(t, b.Read(state, v.State))
		wc, ws := wantState(l, history)
		require.Equal(t, wc, conv, "layer %d convolution state after %v", l, history)
		require.Equal(t, ws, state, "layer %d recurrent state after %v", l, history)
	}
	require.NoError(t, c.Truncate(c.Len())) // drop the probe step
}

func TestHybridSteps(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	c, err := kvcache.NewHybrid(b, hybridSpec(32))
	require.NoError(t, err)
	var hist []int
	checkState(t, b, c, hist)
	runStep(t, b, c, &hist, []int{5, 7, 11, 13})
	runStep(t, b, c, &hist, []int{17})
	checkState(t, b, c, hist)

	// An aborted step leaves everything as it was.
	require.NoError(t, c.Begin(3))
	v, err := c.LinearState(0)
	require.NoError(t, err)
	require.NoError(t, b.Write(v.NewState, fill(stateRows*stateCols, -1)))
	require.NoError(t, c.Truncate(c.Len()))
	checkState(t, b, c, hist)

	// A layer the step does not run keeps its state.
	hist2 := append([]int(nil), hist...)
	runStep(t, b, c, &hist2, []int{19}, 1)
	conv := make([]float32, convRows*channels)
	require.NoError(t, c.Begin(1))
	v, err = c.LinearState(1)
	require.NoError(t, err)
	require.NoError(t, b.Read(conv, v.Conv))
	wc, _ := wantState(1, hist)
	require.Equal(t, wc, conv)
	require.NoError(t, c.Truncate(c.Len()))

	// Misuse is reported.
	_, err = c.LinearState(0)
	require.Error(t, err, "LinearState outside a step")
	require.NoError(t, c.Begin(1))
	_, err = c.LinearState(2)
	require.Error(t, err, "layer 2 has keys and values")
	_, err = c.Update(0, v.Conv, v.Conv)
	require.Error(t, err, "layer 0 is linear")
	require.NoError(t, c.Truncate(c.Len()))
	require.ErrorIs(t, c.Begin(32), kvcache.ErrCacheFull)
}

func TestHybridSnapshots(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	c, err := kvcache.NewHybrid(b, hybridSpec(64))
	require.NoError(t, err)
	var hist []int
	runStep(t, b, c, &hist, []int{1, 2, 3, 4, 5, 6})
	require.NoError(t, c.SnapshotAt(6))  // now
	require.NoError(t, c.SnapshotAt(8))  // inside the next step
	require.NoError(t, c.SnapshotAt(10)) // its end
	require.NoError(t, c.SnapshotAt(12)) // a later step
	require.NoError(t, c.SnapshotAt(12)) // twice is once
	require.Error(t, c.SnapshotAt(5), "the past cannot be snapshotted")
	require.Error(t, c.SnapshotAt(65), "beyond the capacity")
	before := c.Bytes()

	runStep(t, b, c, &hist, []int{7, 8, 9, 10})
	require.Equal(t, []int{6, 8, 10}, c.Snapshots())
	runStep(t, b, c, &hist, []int{11})
	runStep(t, b, c, &hist, []int{12, 13})
	require.Equal(t, []int{6, 8, 10, 12}, c.Snapshots())
	require.Greater(t, c.Bytes(), before, "snapshots take memory")
	require.Equal(t, 10, c.Restorable(11))
	require.Equal(t, 13, c.Restorable(20))
	require.Equal(t, 0, c.Restorable(3))

	// Without a snapshot the recurrent state cannot go back; nothing changes.
	err = c.Truncate(9)
	require.ErrorIs(t, err, kvcache.ErrNoSnapshot)
	checkState(t, b, c, hist)

	// Roll back to a snapshot inside an earlier step, continue differently,
	// roll back again and continue as the first time: the same states.
	require.NoError(t, c.Truncate(8))
	hist = hist[:8]
	require.Equal(t, []int{6, 8}, c.Snapshots(), "later snapshots are forgotten")
	checkState(t, b, c, hist)
	runStep(t, b, c, &hist, []int{40, 41})
	require.NoError(t, c.Truncate(8))
	hist = hist[:8]
	runStep(t, b, c, &hist, []int{9, 10})
	checkState(t, b, c, hist)

	// Back to the start needs no snapshot.
	c.DropSnapshot(6)
	require.Equal(t, []int{8}, c.Snapshots())
	require.NoError(t, c.Truncate(0))
	hist = nil
	checkState(t, b, c, hist)
	runStep(t, b, c, &hist, []int{3, 1, 4})
	checkState(t, b, c, hist)

	// Snapshot buffers are reused, not grown without bound.
	c2, err := kvcache.NewHybrid(b, hybridSpec(64))
	require.NoError(t, err)
	var h2 []int
	for range 5 {
		require.NoError(t, c2.SnapshotAt(c2.Len()+1))
		runStep(t, b, c2, &h2, []int{2, 2})
		c2.DropSnapshot(c2.Len() - 1)
	}
	spec := hybridSpec(64)
	require.LessOrEqual(t, c2.Bytes(), c2.Len()*spec.KVBytesPerToken()*2+4*spec.LinearBytes())
	c2.Release()
	require.Error(t, c2.Begin(1), "use after Release")
}
