package cpu

import (
	"math"

	"github.com/maniac-ai/mach/kernels"
)

// SparseAttention implements kernels.SparseAttender: each query row
// attends to its own list of key rows (DeepSeek-V4's window plus selected
// compressed entries). The arithmetic is Attention's per-key path — q·k by
// the same dot kernels, a max-subtracted softmax that includes the sink,
// values accumulated key by key in list order — so a row's result does not
// depend on the other rows of the call.
func (b *Backend) SparseAttention(dst, q, k, v kernels.Tensor, a kernels.SparseAttention) {
	d, err1 := f32Of(dst)
	qs, err2 := f32Of(q)
	kb, err3 := bufOf(k)
	vb, err4 := bufOf(v)
	if err := firstErr(err1, err2, err3, err4, a.Validate(dst, q, k, v)); err != nil {
		b.fail("sparse_attention", err)
		return
	}
	var sinks []float32
	if !a.Sinks.IsZero() {
		ss, err := f32Of(a.Sinks)
		if err != nil || a.Sinks.Cols != a.Heads || a.Sinks.Rows != 1 {
			b.failf("sparse_attention", "sinks %v for %d heads", a.Sinks, a.Heads)
			return
		}
		sinks = row(ss, a.Sinks, 0)
	}
	hd := a.HeadDim
	group := a.Heads / a.KVHeads
	simd := b.simd && hd%8 == 0
	b.pool.run(q.Rows*a.KVHeads, func(worker, u int) {
		t, kvh := u/a.KVHeads, u%a.KVHeads
		keys := a.Keys[t*a.PerRow : (t+1)*a.PerRow]
		n := 0
		for _, j := range keys {
			if j >= 0 {
				n++
			}
		}
		sc := &b.scratch[worker]
		buf := sc.floats(group*n + hd)
		scores, tmp := buf[:group*n], buf[group*n:group*n+hd]
		qrow := row(qs, q, t)[kvh*group*hd : (kvh+1)*group*hd]
		orow := row(d, dst, t)[kvh*group*hd : (kvh+1)*group*hd]
		i := 0
		for _, j := range keys {
			if j < 0 {
				continue
			}
			kr := b.kvRow(kb, k, int(j), kvh, hd, tmp, simd)
			for g := 0; g < group; g++ {
				if simd {
					scores[g*n+i] = dotF32(&qrow[g*hd], &kr[0], hd)
				} else {
					scores[g*n+i] = dotGo(qrow[g*hd:(g+1)*hd], kr)
				}
			}
			i++
		}
		for g := 0; g < group; g++ {
			s := scores[g*n : (g+1)*n]
			m := float32(math.Inf(-1))
			for i := range s {
				s[i] *= a.Scale
				m = max(m, s[i])
			}
			var sink float32
			if sinks != nil {
				sink = sinks[kvh*group+g]
				m = max(m, sink)
			}
			var sum float32
			for i, x := range s {
				e := float32(math.Exp(float64(x - m)))
				s[i] = e
				sum += e
			}
			if sinks != nil {
				sum += float32(math.Exp(float64(sink - m)))
			}
			if sum > 0 {
				for i := range s {
					s[i] /= sum
				}
			}
		}
		clear(orow)
		i = 0
		for _, j := range keys {
			if j < 0 {
				continue
			}
			vr := b.kvRow(vb, v, int(j), kvh, hd, tmp, simd)
			for g := 0; g < group; g++ {
				w := scores[g*n+i]
				o := orow[g*hd : (g+1)*hd]
				if simd {
					axpyF32(&o[0], w, &vr[0], hd)
				} else {
					for c, x := range vr {
						o[c] += w * x
					}
				}
			}
			i++
		}
	})
}
