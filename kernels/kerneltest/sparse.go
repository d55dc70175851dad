package kerneltest

import (
	"math"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/stretchr/testify/require"
)

// composedOnly hides a backend's native sparse attention, so SparseAttend
// takes the composed path (gather, then Attention per row).
type composedOnly struct{ kernels.Backend }

// testSparseAttention checks attention over per-row key lists (DeepSeek-V4's
// window plus indexer-selected compressed entries) against the composed
// definition on the reference backend: empty slots, rows with no keys,
// shared K=V, sinks, 16-bit caches, and each row's result equal to that row
// computed alone.
func (h *harness) testSparseAttention(t *testing.T) {
	r := rng(51)
	type tc struct {
		name              string
		heads, kvHeads    int
		hd, rows, nk, per int
		sinks, shared     bool
		cache             kernels.DType
	}
	for _, c := range []tc{
		{name: "mqa_shared_kv_sinks", heads: 8, kvHeads: 1, hd: 32, rows: 5, nk: 40, per: 12, sinks: true, shared: true, cache: kernels.F32},
		{name: "gqa", heads: 4, kvHeads: 2, hd: 16, rows: 3, nk: 20, per: 7, cache: kernels.F32},
		{name: "f16_cache", heads: 4, kvHeads: 1, hd: 16, rows: 4, nk: 30, per: 9, sinks: true, shared: true, cache: kernels.F16},
		{name: "bf16_cache", heads: 2, kvHeads: 1, hd: 24, rows: 2, nk: 10, per: 5, cache: kernels.BF16},
	} {
		if c.cache != kernels.F32 && !containsDType(h.b.Capabilities().CacheTypes, c.cache) {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			q := randVals(r, c.rows*c.heads*c.hd, 1)
			kc, vc := randVals(r, c.nk*c.kvHeads*c.hd, 1), randVals(r, c.nk*c.kvHeads*c.hd, 1)
			sinks := randVals(r, c.heads, 1)
			keys := make([]int32, c.rows*c.per)
			for i := range keys {
				keys[i] = int32(r.IntN(c.nk+3)) - 3 // about one slot in ten empty
			}
			for j := range c.per { // a row with no keys at all
				keys[(c.rows-1)*c.per+j] = -1
			}
			spec := kernels.SparseAttention{Heads: c.heads, KVHeads: c.kvHeads, HeadDim: c.hd,
				Scale: float32(1 / math.Sqrt(float64(c.hd))), Keys: keys, PerRow: c.per}
			apply := func(be kernels.Backend, dst kernels.Tensor, f32kv bool) error {
				s := spec
				if c.sinks {
					s.Sinks = upload(t, be, kernels.F32, 1, c.heads, sinks)
				}
				load := func(vals []float32) kernels.Tensor {
					x := upload(t, be, c.cache, c.nk, c.kvHeads*c.hd, vals)
					if f32kv && c.cache != kernels.F32 {
						w, err := be.Alloc(kernels.F32, c.nk, c.kvHeads*c.hd)
						require.NoError(t, err)
						be.Copy(w, x)
						x = w
					}
					return x
				}
				k := load(kc)
				v := k
				if !c.shared {
					v = load(vc)
				}
				scratch := func(n int) (kernels.Tensor, error) { return be.Alloc(kernels.F32, 2*n, c.kvHeads*c.hd) }
				return kernels.SparseAttend(be, dst, upload(t, be, kernels.F32, c.rows, c.heads*c.hd, q), k, v, s, scratch)
			}
			wantT := upload(t, h.ref, kernels.F32, c.rows, c.heads*c.hd, make([]float32, c.rows*c.heads*c.hd))
			require.NoError(t, apply(composedOnly{h.ref}, wantT, true))
			require.NoError(t, h.ref.Sync())
			want := read(t, h.ref, wantT)
			view, whole := poisoned(t, h.b, c.rows, c.heads*c.hd)
			require.NoError(t, apply(h.b, view, false))
			require.NoError(t, h.b.Sync())
			got := readChecked(t, h.b, view, whole, "SparseAttention "+c.name)
			closeTo(t, got, want, 2e-6, 2e-5, "SparseAttention %s", c.name)
			for i := range want[(c.rows-1)*c.heads*c.hd:] {
				require.Zero(t, got[(c.rows-1)*c.heads*c.hd+i], "a row with no keys is zero")
			}
			if h.b.Capabilities().Has(kernels.OpBatchInvariant) {
				one := spec
				one.Keys = keys[:c.per]
				dst := upload(t, h.b, kernels.F32, 1, c.heads*c.hd, make([]float32, c.heads*c.hd))
				if c.sinks {
					one.Sinks = upload(t, h.b, kernels.F32, 1, c.heads, sinks)
				}
				k := upload(t, h.b, c.cache, c.nk, c.kvHeads*c.hd, kc)
				v := k
				if !c.shared {
					v = upload(t, h.b, c.cache, c.nk, c.kvHeads*c.hd, vc)
				}
				require.NoError(t, kernels.SparseAttend(h.b, dst, upload(t, h.b, kernels.F32, 1, c.heads*c.hd, q[:c.heads*c.hd]), k, v, one, nil))
				require.Equal(t, got[:c.heads*c.hd], read(t, h.b, dst), "row 0 alone")
			}
		})
	}
	// Malformed calls are errors, not panics.
	q := upload(t, h.b, kernels.F32, 1, 16, make([]float32, 16))
	k := upload(t, h.b, kernels.F32, 4, 16, make([]float32, 64))
	bad := kernels.SparseAttention{Heads: 1, KVHeads: 1, HeadDim: 16, Keys: []int32{0, 9}, PerRow: 2}
	require.Error(t, kernels.SparseAttend(h.b, q, q, k, k, bad, nil), "key row outside k")
	bad.Keys = []int32{0}
	require.Error(t, kernels.SparseAttend(h.b, q, q, k, k, bad, nil), "wrong list length")
}
