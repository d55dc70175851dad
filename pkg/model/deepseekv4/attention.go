package deepseekv4

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
)

// attend writes layer a's attention output for the normed rows x into out.
func (m *Model) attend(ctx context.Context, a *attention, step *model.Step, x, out kernels.Tensor) error {
	b, ws, o := m.b, m.ws, m.opts
	n, d := x.Rows, o.HeadDim
	qd := o.Heads * d
	qr, err := ws.Get("attn.qr", n, o.QLora)
	if err != nil {
		return err
	}
	q, err := ws.Get("attn.q", n, qd)
	if err != nil {
		return err
	}
	kv, err := ws.Get("attn.kv", n, d)
	if err != nil {
		return err
	}
	att, err := ws.Get("attn.o", n, qd)
	if err != nil {
		return err
	}
	// Low-rank query, normed per head without a weight; one K=V head.
	b.MatMul(qr, x, a.wqA)
	b.RMSNorm(qr, qr, a.qNorm, o.Eps, false)
	b.MatMul(q, qr, a.wqB)
	qh := q.Reshape(n*o.Heads, d)
	b.RMSNorm(qh, qh, kernels.Tensor{}, o.Eps, false)
	b.RoPE(q, step.Pos, a.rope)
	b.MatMul(kv, x, a.wkv)
	b.RMSNorm(kv, kv, a.kvNrm, o.Eps, false)
	b.RoPE(kv, step.Pos, a.rope)

	// The compressors' projections and the indexer's queries and head
	// weights for the whole batch, on the host.
	var comp, icomp *projections
	var iq, iw []float32
	if a.comp != nil {
		if comp, err = m.project(a.comp, x, "cmp"); err != nil {
			return err
		}
	}
	if a.idx != nil {
		if icomp, err = m.project(a.idx.comp, x, "icmp"); err != nil {
			return err
		}
		if iq, iw, err = m.indexQueries(a.idx, qr, x, step); err != nil {
			return err
		}
	}
	if err := b.Sync(); err != nil {
		return err
	}
	for i, s := range step.Batch.Seqs {
		if err := ctx.Err(); err != nil {
			return err
		}
		r0, r1 := step.SeqRows(i)
		cs, err := s.Cache.(kvcache.CompressedCache).CompressedLayer(a.layer)
		if err != nil {
			return fmt.Errorf("attention layer %d: %w", a.layer, err)
		}
		if err := cs.PutWindow(kv.RowRange(r0, r1)); err != nil {
			return fmt.Errorf("attention layer %d: %w", a.layer, err)
		}
		var picks [][]int32
		if a.comp != nil {
			if err := m.compress(a.comp, cs, 0, comp, r0, r1); err != nil {
				return fmt.Errorf("attention layer %d: %w", a.layer, err)
			}
		}
		if a.idx != nil {
			if err := m.compress(a.idx.comp, cs, 1, icomp, r0, r1); err != nil {
				return fmt.Errorf("attention layer %d: indexer: %w", a.layer, err)
			}
			picks = m.pick(a, cs, iq, iw, step.SeqPos(i), r0)
		}
		view := cs.View()
		keys, per := m.keyLists(a, view, step.SeqPos(i), picks)
		spec := kernels.SparseAttention{Heads: o.Heads, KVHeads: 1, HeadDim: d, Scale: float32(1 / math.Sqrt(float64(d))),
			Keys: keys, PerRow: per, Sinks: a.sinks}
		scratch := func(k int) (kernels.Tensor, error) { return ws.Get("attn.gather", 2*k, d) }
		if err := kernels.SparseAttend(b, att.RowRange(r0, r1), q.RowRange(r0, r1), view.KV, view.KV, spec, scratch); err != nil {
			return fmt.Errorf("attention layer %d: %w", a.layer, err)
		}
	}
	// V carries the keys' rotation: undo it at the query's position, then
	// the grouped low-rank output projection.
	inv := a.rope
	inv.Inverse = true
	b.RoPE(att, step.Pos, inv)
	z, err := ws.Get("attn.z", n, o.OGroups*o.OLora)
	if err != nil {
		return err
	}
	per := qd / o.OGroups
	for g, w := range a.woA {
		b.MatMul(z.ColRange(g*o.OLora, (g+1)*o.OLora), att.ColRange(g*per, (g+1)*per), w)
	}
	b.MatMul(out, z, a.woB)
	return nil
}

// projections are a compressor's K=V and gate projections of the batch's
// rows, on the host (rows × coff·d each).
type projections struct {
	kv, gate []float32
	width    int
}

func (m *Model) project(c *compressor, x kernels.Tensor, name string) (*projections, error) {
	b, ws := m.b, m.ws
	n, w := x.Rows, c.coff*c.d
	kvT, err := ws.Get(name+".kv", n, w)
	if err != nil {
		return nil, err
	}
	gT, err := ws.Get(name+".gate", n, w)
	if err != nil {
		return nil, err
	}
	b.MatMul(kvT, x, c.wkv)
	b.MatMul(gT, x, c.wgate)
	p := &projections{kv: ws.Float32s(name+".kvh", n*w), gate: ws.Float32s(name+".gateh", n*w), width: w}
	if err := b.Read(p.kv, kvT); err != nil {
		return nil, err
	}
	if err := b.Read(p.gate, gT); err != nil {
		return nil, err
	}
	return p, nil
}

// compress stores the step's projections (rows r0…r1 of p) with compressor
// which of the layer's cache and writes the entries the step closes: each
// softmax-pools its window's tokens per channel (gate + ape), then RMSNorm
// and the compressed rotary embedding at the window's first position.
func (m *Model) compress(c *compressor, cs *kvcache.CompressedStep, which int, p *projections, r0, r1 int) error {
	b, ws := m.b, m.ws
	w := p.width
	rows := make([]float32, 0, (r1-r0)*2*w)
	for t := r0; t < r1; t++ {
		rows = append(rows, p.kv[t*w:(t+1)*w]...)
		rows = append(rows, p.gate[t*w:(t+1)*w]...)
	}
	if err := cs.PutRaw(which, rows); err != nil {
		return err
	}
	k := cs.NewEntries()
	if k == 0 {
		return nil
	}
	raw, first, err := cs.Raw(which)
	if err != nil {
		return err
	}
	ratio, d, coff := c.m, c.d, c.coff
	w0 := cs.Start() / ratio // first window the step closes
	pooled := ws.Float32s("cmp.pooled", k*d)
	slots := coff * ratio
	gate := make([]float32, slots)
	val := make([]float32, slots)
	at := func(pos int) []float32 { return raw[(pos-first)*2*w : (pos-first+1)*2*w] }
	for e := 0; e < k; e++ {
		win := w0 + e
		for ch := 0; ch < d; ch++ {
			ns := 0
			if coff == 2 {
				// The previous window's tokens through the first series.
				if win > 0 {
					for s := 0; s < ratio; s++ {
						r := at((win-1)*ratio + s)
						val[ns], gate[ns] = r[ch], r[w+ch]+c.ape[s*w+ch]
						ns++
					}
				}
				for s := 0; s < ratio; s++ {
					r := at(win*ratio + s)
					val[ns], gate[ns] = r[d+ch], r[w+d+ch]+c.ape[s*w+d+ch]
					ns++
				}
			} else {
				for s := 0; s < ratio; s++ {
					r := at(win*ratio + s)
					val[ns], gate[ns] = r[ch], r[w+ch]+c.ape[s*w+ch]
					ns++
				}
			}
			pooled[e*d+ch] = poolChannel(val[:ns], gate[:ns])
		}
	}
	t, err := ws.Get("cmp.entries", k, d)
	if err != nil {
		return err
	}
	if err := b.Write(t, pooled); err != nil {
		return err
	}
	b.RMSNorm(t, t, c.norm, m.opts.Eps, false)
	pos := ws.Int32s("cmp.pos", k)
	for e := range pos {
		pos[e] = int32((w0 + e) * ratio)
	}
	b.RoPE(t, pos, c.rope)
	if which == 0 {
		return cs.PutEntries(t)
	}
	host := make([]float32, k*d)
	if err := b.Read(host, t); err != nil {
		return err
	}
	return cs.PutIndexEntries(host)
}

// poolChannel is one channel of an entry: Σ softmax(gate)·val in f32, as
// transformers computes it (softmax in f32, then the weighted sum).
func poolChannel(val, gate []float32) float32 {
	mx := float32(math.Inf(-1))
	for _, g := range gate {
		mx = max(mx, g)
	}
	var sum float32
	e := make([]float32, len(gate))
	for i, g := range gate {
		e[i] = float32(math.Exp(float64(g - mx)))
		sum += e[i]
	}
	var out float32
	for i, v := range val {
		out += v * (e[i] / sum)
	}
	return out
}

// indexQueries returns the indexer's rotated queries (rows × heads·dim)
// and per-head weights (rows × heads) on the host.
func (m *Model) indexQueries(x *indexer, qr, xin kernels.Tensor, step *model.Step) ([]float32, []float32, error) {
	b, ws, o := m.b, m.ws, m.opts
	n := qr.Rows
	q, err := ws.Get("idx.q", n, x.heads*o.IndexDim)
	if err != nil {
		return nil, nil, err
	}
	b.MatMul(q, qr, x.wqB)
	b.RoPE(q, step.Pos, o.IndexRoPE)
	w, err := ws.Get("idx.w", n, x.heads)
	if err != nil {
		return nil, nil, err
	}
	b.MatMul(w, xin, x.wproj)
	qh := ws.Float32s("idx.qh", n*x.heads*o.IndexDim)
	wh := ws.Float32s("idx.wh", n*x.heads)
	if err := b.Read(qh, q); err != nil {
		return nil, nil, err
	}
	if err := b.Read(wh, w); err != nil {
		return nil, nil, err
	}
	return qh, wh, nil
}

// pick returns, for every query row of the sequence (positions pos, rows
// from r0 of the batch), the compressed entries it attends to: every
// visible one while there are at most index_topk, else the index_topk with
// the highest indexer scores Σ_h w_h·ReLU(q_h·k)/√dim (w_h scaled by
// 1/√heads) among every entry closed by the end of the step, those not yet
// visible scoring -inf (transformers' masking; ties resolve as PyTorch's
// CPU topk does, see topk.go). Each list is ascending.
func (m *Model) pick(a *attention, cs *kvcache.CompressedStep, q, w []float32, pos []int32, r0 int) [][]int32 {
	o := m.opts
	keys := cs.IndexEntries()
	dim, heads := o.IndexDim, a.idx.heads
	total := len(keys) / dim
	scale := float32(1 / math.Sqrt(float64(dim)))
	wscale := float32(1 / math.Sqrt(float64(heads)))
	out := make([][]int32, len(pos))
	scores := make([]float32, total)
	for t, p := range pos {
		visible := min((int(p)+1)/a.ratio, total)
		if visible <= o.IndexTopK {
			ids := make([]int32, visible)
			for j := range ids {
				ids[j] = int32(j)
			}
			out[t] = ids
			continue
		}
		row := r0 + t
		for j := range scores {
			if j >= visible {
				scores[j] = float32(math.Inf(-1))
				continue
			}
			k := keys[j*dim : (j+1)*dim]
			var s float32
			for hh := 0; hh < heads; hh++ {
				qv := q[(row*heads+hh)*dim : (row*heads+hh+1)*dim]
				var dot float32
				for c, v := range qv {
					dot += v * k[c]
				}
				s += max(dot, 0) * scale * (w[row*heads+hh] * wscale)
			}
			scores[j] = s
		}
		ids := topKSet(scores, o.IndexTopK)
		slices.Sort(ids)
		out[t] = ids
	}
	return out
}

// keyLists builds each query row's key rows: its sliding window (positions
// p-W+1 … p) then its compressed entries (every visible one on HCA layers,
// the picked ones on CSA layers). It returns them row-major, padded with -1
// to the longest list.
func (m *Model) keyLists(a *attention, v kvcache.CompressedView, pos []int32, picks [][]int32) ([]int32, int) {
	win := m.opts.Window
	lists := make([][]int32, len(pos))
	per := 0
	p0 := int32(0)
	if len(v.WinPos) > 0 {
		p0 = v.WinPos[0]
	}
	for t, p := range pos {
		var l []int32
		for q := max(0, p-int32(win)+1); q <= p; q++ {
			l = append(l, int32(v.WinFirst)+q-p0)
		}
		switch {
		case picks != nil:
			for _, j := range picks[t] {
				l = append(l, int32(v.EntryRow)+j)
			}
		case a.ratio > 0:
			for j := 0; j < (int(p)+1)/a.ratio; j++ {
				l = append(l, int32(v.EntryRow+j))
			}
		}
		lists[t] = l
		per = max(per, len(l))
	}
	keys := make([]int32, len(pos)*per)
	for t, l := range lists {
		r := keys[t*per : (t+1)*per]
		copy(r, l)
		for j := len(l); j < per; j++ {
			r[j] = -1
		}
	}
	return keys, per
}
