package cpu

import (
	"math"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/quant"
)

// Attention implements kernels.Backend. Work is split over (query row, key
// head) pairs; the query heads sharing a key head are scored together so
// each key row is read once per pair.
func (b *Backend) Attention(dst, q, k, v kernels.Tensor, a kernels.Attention) {
	d, err1 := f32Of(dst)
	qs, err2 := f32Of(q)
	kb, err3 := bufOf(k)
	vb, err4 := bufOf(v)
	if err := firstErr(err1, err2, err3, err4, sameShape(dst, q)); err != nil {
		b.fail("attention", err)
		return
	}
	hd := a.HeadDim
	switch {
	case a.Heads <= 0 || a.KVHeads <= 0 || hd <= 0 || a.Heads%a.KVHeads != 0:
		b.failf("attention", "heads %d / kv heads %d / head dim %d", a.Heads, a.KVHeads, hd)
		return
	case q.Cols != a.Heads*hd || k.Cols != a.KVHeads*hd || v.Cols != a.KVHeads*hd:
		b.failf("attention", "q %v, k %v, v %v for %d×%d / %d×%d heads", q, k, v, a.Heads, hd, a.KVHeads, hd)
		return
	case a.NumKeys < 0 || k.Rows < a.NumKeys || v.Rows < a.NumKeys:
		b.failf("attention", "%d keys but k %v, v %v", a.NumKeys, k, v)
		return
	case len(a.QPos) != q.Rows || (a.KPos != nil && len(a.KPos) < a.NumKeys):
		b.failf("attention", "%d query positions for %d rows, %d key positions for %d keys", len(a.QPos), q.Rows, len(a.KPos), a.NumKeys)
		return
	}
	var sinks []float32
	if !a.Sinks.IsZero() {
		ss, err := f32Of(a.Sinks)
		if err != nil || a.Sinks.Cols != a.Heads {
			b.failf("attention", "sinks %v for %d heads", a.Sinks, a.Heads)
			return
		}
		sinks = row(ss, a.Sinks, 0)
	}
	group := a.Heads / a.KVHeads
	simd := b.simd && hd%8 == 0
	if simd && q.Rows > 1 && (kb.dt != kernels.F32 || vb.dt != kernels.F32) {
		// Many queries over a 16-bit cache: widen the keys and values once
		// rather than once per query.
		k, kb, v, vb = b.widen(k, kb, v, vb, a.NumKeys)
	}
	// Contiguous f32 keys and values take the blocked kernels (three keys
	// per dot call, eight values per update); the per-key path computes
	// the same operations one key at a time.
	blocked := simd && a.KPos == nil && kb.dt == kernels.F32 && vb.dt == kernels.F32
	units := q.Rows * a.KVHeads
	run := b.pool.run
	if q.Rows*a.NumKeys*a.Heads*hd < 1<<18 {
		// A decoding step's attention is too little work to wake a worker.
		run = func(n int, fn func(worker, i int)) {
			for i := 0; i < n; i++ {
				fn(0, i)
			}
		}
	}
	run(units, func(worker, u int) {
		t, kvh := u/a.KVHeads, u%a.KVHeads
		p := a.QPos[t]
		// Visible keys: a contiguous range when key j sits at position j,
		// else the list of matching positions.
		visible := func(pos int32) bool {
			return (!a.Causal || pos <= p) && (a.Window <= 0 || pos > p-int32(a.Window))
		}
		var lo, hi int // range [lo, hi)
		var list []int32
		if a.KPos == nil {
			hi = a.NumKeys
			if a.Causal {
				hi = min(hi, int(p)+1)
			}
			if a.Window > 0 {
				lo = max(0, int(p)-a.Window+1)
			}
			hi = max(hi, lo)
		} else {
			for j := 0; j < a.NumKeys; j++ {
				if visible(a.KPos[j]) {
					list = append(list, int32(j))
				}
			}
		}
		n := hi - lo
		if a.KPos != nil {
			n = len(list)
		}
		key := func(i int) int {
			if a.KPos != nil {
				return int(list[i])
			}
			return lo + i
		}
		sc := &b.scratch[worker]
		buf := sc.floats(group*n + 2*hd)
		scores := buf[:group*n]
		kv := buf[group*n : group*n+hd]
		qrow := row(qs, q, t)[kvh*group*hd : (kvh+1)*group*hd]
		orow := row(d, dst, t)[kvh*group*hd : (kvh+1)*group*hd]

		// Scores.
		i := 0
		if blocked {
			var o12 [12]float32
			for ; i+3 <= n; i += 3 {
				k0 := kvF32(kb, k, key(i), kvh, hd)
				k1 := kvF32(kb, k, key(i+1), kvh, hd)
				k2 := kvF32(kb, k, key(i+2), kvh, hd)
				g := 0
				for ; g+4 <= group; g += 4 {
					dotF32x4x3(&qrow[g*hd], hd, &k0[0], &k1[0], &k2[0], hd, &o12)
					for r := 0; r < 4; r++ {
						scores[(g+r)*n+i] = o12[3*r]
						scores[(g+r)*n+i+1] = o12[3*r+1]
						scores[(g+r)*n+i+2] = o12[3*r+2]
					}
				}
				for ; g < group; g++ {
					scores[g*n+i] = dotF32(&qrow[g*hd], &k0[0], hd)
					scores[g*n+i+1] = dotF32(&qrow[g*hd], &k1[0], hd)
					scores[g*n+i+2] = dotF32(&qrow[g*hd], &k2[0], hd)
				}
			}
		}
		for ; i < n; i++ {
			kr := b.kvRow(kb, k, key(i), kvh, hd, kv, simd)
			g := 0
			if simd {
				var o4 [4]float32
				for ; g+4 <= group; g += 4 {
					dotF32x4x1(&qrow[g*hd], hd, &kr[0], hd, &o4)
					for c := 0; c < 4; c++ {
						scores[(g+c)*n+i] = o4[c]
					}
				}
				for ; g < group; g++ {
					scores[g*n+i] = dotF32(&qrow[g*hd], &kr[0], hd)
				}
			} else {
				for ; g < group; g++ {
					scores[g*n+i] = dotGo(qrow[g*hd:(g+1)*hd], kr)
				}
			}
		}
		// Softmax per head, with the optional sink.
		for g := 0; g < group; g++ {
			s := scores[g*n : (g+1)*n]
			m := float32(math.Inf(-1))
			for i := range s {
				x := s[i] * a.Scale
				if a.Softcap > 0 {
					x = a.Softcap * float32(math.Tanh(float64(x/a.Softcap)))
				}
				s[i] = x
				m = max(m, x)
			}
			var sink float32
			hasSink := sinks != nil
			if hasSink {
				sink = sinks[kvh*group+g]
				m = max(m, sink)
			}
			var sum float32
			i := 0
			if simd && len(s) >= 8 {
				i = len(s) &^ 7
				sum = expShift(&s[0], &s[0], m, i)
			}
			for ; i < len(s); i++ {
				e := float32(math.Exp(float64(s[i] - m)))
				s[i] = e
				sum += e
			}
			if hasSink {
				sum += float32(math.Exp(float64(sink - m)))
			}
			if sum > 0 {
				for i := range s {
					s[i] /= sum
				}
			}
		}
		// Weighted values, accumulated key by key in order.
		clear(orow)
		i = 0
		if blocked {
			ldv := v.Stride
			for ; i+8 <= n; i += 8 {
				v0 := kvF32(vb, v, key(i), kvh, hd)
				for g := 0; g < group; g++ {
					axpy8(&orow[g*hd], &scores[g*n+i], &v0[0], ldv, hd)
				}
			}
		}
		for ; i < n; i++ {
			vr := b.kvRow(vb, v, key(i), kvh, hd, kv, simd)
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
		}
	})
}

// kvF32 returns head kvh of row j of an f32 key/value tensor, in place.
func kvF32(buf *buffer, t kernels.Tensor, j, kvh, hd int) []float32 {
	o := t.Off + j*t.Stride + kvh*hd
	return buf.f32[o : o+hd : o+hd]
}

// widen copies the first n rows of 16-bit keys and values into f32
// backend scratch (reused across calls) and returns views of it.
func (b *Backend) widen(k kernels.Tensor, kb *buffer, v kernels.Tensor, vb *buffer, n int) (kernels.Tensor, *buffer, kernels.Tensor, *buffer) {
	need := n * (k.Cols + v.Cols)
	if cap(b.kvWide) < need {
		b.kvWide = make([]float32, need)
	}
	wk := &buffer{dt: kernels.F32, f32: b.kvWide[: n*k.Cols : n*k.Cols]}
	wv := &buffer{dt: kernels.F32, f32: b.kvWide[n*k.Cols : need : need]}
	conv := func(dst []float32, src *buffer, t kernels.Tensor, r int) {
		o := t.Off + r*t.Stride
		if src.dt == kernels.F32 {
			copy(dst, src.f32[o:o+t.Cols])
			return
		}
		s := src.u16[o : o+t.Cols]
		if src.dt == kernels.F16 && t.Cols%8 == 0 {
			cvtF16(&dst[0], &s[0], t.Cols)
			return
		}
		widen(src, o, t.Cols, func(j int, x float32) { dst[j] = x })
	}
	b.forRows(n, k.Cols+v.Cols, func(_, r int) {
		conv(wk.f32[r*k.Cols:(r+1)*k.Cols], kb, k, r)
		conv(wv.f32[r*v.Cols:(r+1)*v.Cols], vb, v, r)
	})
	kt := kernels.Tensor{Buf: wk, Rows: n, Cols: k.Cols, Stride: k.Cols}
	vt := kernels.Tensor{Buf: wv, Rows: n, Cols: v.Cols, Stride: v.Cols}
	return kt, wk, vt, wv
}

// kvRow returns head kvh of key/value row j as f32, widening 16-bit
// storage into tmp.
func (b *Backend) kvRow(buf *buffer, t kernels.Tensor, j, kvh, hd int, tmp []float32, simd bool) []float32 {
	o := t.Off + j*t.Stride + kvh*hd
	switch buf.dt {
	case kernels.F32:
		return buf.f32[o : o+hd]
	case kernels.F16:
		src := buf.u16[o : o+hd]
		if simd {
			cvtF16(&tmp[0], &src[0], hd)
		} else {
			for i, h := range src {
				tmp[i] = quant.F16ToF32(h)
			}
		}
	default:
		for i, h := range buf.u16[o : o+hd] {
			tmp[i] = quant.BF16ToF32(h)
		}
	}
	return tmp[:hd]
}
