package kvcache_test

import (
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/stretchr/testify/require"
)

// step writes tokens [c.Len(), c.Len()+n) whose key row j is filled with
// float(pos·10 + layer) and value with the negation.
func step(t *testing.T, b kernels.Backend, c kvcache.Cache, layers, width, n int) []kvcache.View {
	t.Helper()
	require.NoError(t, c.Begin(n))
	var views []kvcache.View
	for l := 0; l < layers; l++ {
		kv := make([]float32, n*width)
		vv := make([]float32, n*width)
		for i := 0; i < n; i++ {
			for j := 0; j < width; j++ {
				kv[i*width+j] = float32((c.Len()+i)*10 + l)
				vv[i*width+j] = -kv[i*width+j]
			}
		}
		k, err := b.Alloc(kernels.F32, n, width)
		require.NoError(t, err)
		require.NoError(t, b.Write(k, kv))
		v, err := b.Alloc(kernels.F32, n, width)
		require.NoError(t, err)
		require.NoError(t, b.Write(v, vv))
		view, err := c.Update(l, k, v)
		require.NoError(t, err)
		views = append(views, view)
	}
	c.Commit()
	return views
}

func checkView(t *testing.T, b kernels.Backend, view kvcache.View, layer, width int) {
	t.Helper()
	k := make([]float32, view.NumKeys*width)
	require.NoError(t, b.Read(k, view.K.RowRange(0, view.NumKeys)))
	v := make([]float32, view.NumKeys*width)
	require.NoError(t, b.Read(v, view.V.RowRange(0, view.NumKeys)))
	for p := 0; p < view.NumKeys; p++ {
		require.Equal(t, float32(p*10+layer), k[p*width], "key at position %d, layer %d", p, layer)
		require.Equal(t, -float32(p*10+layer), v[p*width+width-1], "value at position %d, layer %d", p, layer)
	}
}

func TestStandard(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			const layers, width = 3, 8
			spec := kvcache.Spec{Layers: []kvcache.LayerShape{{width, width}, {width, width}, {width, width}}, DType: dt, Capacity: 20, Initial: 2}
			c, err := kvcache.NewStandard(b, spec)
			require.NoError(t, err)
			require.Equal(t, 2*3*2*width*dt.Size(), c.Bytes())

			views := step(t, b, c, layers, width, 5) // prefill, grows past Initial
			require.Equal(t, 5, c.Len())
			for l, v := range views {
				require.Equal(t, 5, v.NumKeys)
				checkView(t, b, v, l, width)
			}
			for i := 0; i < 3; i++ { // decode steps
				views = step(t, b, c, layers, width, 1)
			}
			require.Equal(t, 8, c.Len())
			checkView(t, b, views[2], 2, width)

			// Roll back to a prefix and continue: old rows are overwritten.
			require.NoError(t, c.Truncate(6))
			views = step(t, b, c, layers, width, 2)
			require.Equal(t, 8, views[0].NumKeys)
			checkView(t, b, views[1], 1, width)

			// Capacity.
			_ = step(t, b, c, layers, width, 12)
			require.Equal(t, 20, c.Len())
			require.ErrorIs(t, c.Begin(1), kvcache.ErrCacheFull)
			require.Error(t, c.Truncate(21))

			c.Release()
			require.Error(t, c.Begin(1))
		})
	}
}

func TestStandardF16Rounds(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	c, err := kvcache.NewStandard(b, kvcache.Spec{Layers: []kvcache.LayerShape{{2, 2}}, DType: kernels.F16, Capacity: 4})
	require.NoError(t, err)
	require.NoError(t, c.Begin(1))
	x, _ := b.Alloc(kernels.F32, 1, 2)
	require.NoError(t, b.Write(x, []float32{1.0001, -3.14159}))
	view, err := c.Update(0, x, x)
	require.NoError(t, err)
	got := make([]float32, 2)
	require.NoError(t, b.Read(got, view.K))
	require.Equal(t, []float32{quant.F16ToF32(quant.F32ToF16(1.0001)), quant.F16ToF32(quant.F32ToF16(-3.14159))}, got)
}

func TestStandardMisuse(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	_, err := kvcache.NewStandard(b, kvcache.Spec{DType: kernels.F32, Capacity: 4})
	require.Error(t, err, "no layers")
	c, err := kvcache.NewStandard(b, kvcache.Spec{Layers: []kvcache.LayerShape{{2, 2}}, DType: kernels.F32, Capacity: 4})
	require.NoError(t, err)
	x, _ := b.Alloc(kernels.F32, 2, 2)
	_, err = c.Update(0, x, x)
	require.Error(t, err, "Update before Begin")
	require.NoError(t, c.Begin(1))
	_, err = c.Update(0, x, x)
	require.Error(t, err, "two rows for a one-token step")
	_, err = c.Update(3, x.Row(0), x.Row(0))
	require.Error(t, err, "layer out of range")
	require.Error(t, c.Begin(0))
}
