package deepseekv4

import (
	"context"
	"fmt"
	"math"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
)

// Forward implements model.Model.
func (m *Model) Forward(ctx context.Context, batch *model.Batch) (*model.Output, error) {
	step, err := m.begin(batch)
	if err != nil {
		return nil, err
	}
	out, err := m.forward(ctx, step, nil)
	if err := step.End(m.b, err); err != nil {
		return nil, err
	}
	return out, nil
}

// Hidden runs the step and returns every row's hyper-connection streams
// after each layer ([rows, hc_mult, hidden] per layer, as transformers'
// layer outputs), for bisecting parity failures. It commits like Forward.
func (m *Model) Hidden(ctx context.Context, batch *model.Batch) ([][]float32, error) {
	step, err := m.begin(batch)
	if err != nil {
		return nil, err
	}
	var hs [][]float32
	_, err = m.forward(ctx, step, &hs)
	if err := step.End(m.b, err); err != nil {
		return nil, err
	}
	return hs, nil
}

func (m *Model) begin(batch *model.Batch) (*model.Step, error) {
	if batch != nil {
		for i, s := range batch.Seqs {
			if _, ok := s.Cache.(kvcache.CompressedCache); s.Cache != nil && !ok {
				return nil, fmt.Errorf("%w: sequence %d: deepseek_v4 needs a compressed cache (Model.NewCache), not %T", model.ErrBatch, i, s.Cache)
			}
		}
	}
	return model.BeginStep(batch, m.opts.Vocab, m.opts.MaxPositions)
}

func (m *Model) forward(ctx context.Context, step *model.Step, hidden *[][]float32) (*model.Output, error) {
	b, ws, o := m.b, m.ws, m.opts
	n, h, hc := step.Rows, o.Hidden, o.HCMult
	x, err := ws.Get("x", n, hc*h)
	if err != nil {
		return nil, err
	}
	x2, err := ws.Get("x2", n, hc*h)
	if err != nil {
		return nil, err
	}
	emb, err := ws.Get("emb", n, h)
	if err != nil {
		return nil, err
	}
	an, err := ws.Get("an", n, h)
	if err != nil {
		return nil, err
	}
	y, err := ws.Get("y", n, h)
	if err != nil {
		return nil, err
	}
	// Every stream starts as the embedding.
	b.Embed(emb, m.embed, step.Tokens)
	for j := 0; j < hc; j++ {
		b.Copy(x.ColRange(j*h, (j+1)*h), emb)
	}
	for i := range m.layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l := &m.layers[i]
		a, post, comb, err := m.hcPre(&l.attnHC, x)
		if err != nil {
			return nil, err
		}
		b.RMSNorm(an, a, l.attnNorm, o.Eps, false)
		if err := m.attend(ctx, l.attn, step, an, y); err != nil {
			return nil, err
		}
		m.hcPost(x2, x, y, post, comb)
		x, x2 = x2, x
		if a, post, comb, err = m.hcPre(&l.ffnHC, x); err != nil {
			return nil, err
		}
		b.RMSNorm(an, a, l.ffnNorm, o.Eps, false)
		if err := m.moe(ctx, i, l.ffn, step, an, y); err != nil {
			return nil, err
		}
		m.hcPost(x2, x, y, post, comb)
		x, x2 = x2, x
		if hidden != nil {
			hs := make([]float32, n*hc*h)
			if err := b.Read(hs, x); err != nil {
				return nil, err
			}
			*hidden = append(*hidden, hs)
		}
	}
	if err := b.Sync(); err != nil {
		return nil, err
	}
	return m.logits(step, x)
}

// hcPre computes a hyper-connection site's weights from the streams x
// (rows × hc·hidden) and returns the collapsed input Σ pre_i·X_i (rows ×
// hidden) with post (rows × hc) and comb (rows × hc × hc, comb[i][j] the
// weight of old stream i in new stream j) on the host.
func (m *Model) hcPre(s *hcSite, x kernels.Tensor) (kernels.Tensor, []float32, []float32, error) {
	ws, o := m.ws, m.opts
	n, hc := x.Rows, o.HCMult
	mixW := (2 + hc) * hc
	mix, err := m.hcMix(s, x, mixW)
	if err != nil {
		return kernels.Tensor{}, nil, nil, err
	}
	pre := ws.Float32s("hc.pre", n*hc)
	post := ws.Float32s("hc.post", n*hc)
	comb := ws.Float32s("hc.comb", n*hc*hc)
	eps := o.HCEps
	for t := 0; t < n; t++ {
		r := mix[t*mixW : (t+1)*mixW]
		for i := 0; i < hc; i++ {
			pre[t*hc+i] = sigmoid(r[i]*s.scale[0]+s.base[i]) + eps
			post[t*hc+i] = 2 * sigmoid(r[hc+i]*s.scale[1]+s.base[hc+i])
		}
		sinkhorn(comb[t*hc*hc:(t+1)*hc*hc], r[2*hc:], s.base[2*hc:], s.scale[2], hc, o.SinkhornIters, eps)
	}
	a, err := m.collapse(x, pre, "hc")
	return a, post, comb, err
}

// hcMix returns the site's mixing logits fn·RMSNorm(x) on the host.
func (m *Model) hcMix(s *hcSite, x kernels.Tensor, width int) ([]float32, error) {
	b, ws := m.b, m.ws
	xn, err := ws.Get("hc.xn", x.Rows, x.Cols)
	if err != nil {
		return nil, err
	}
	b.RMSNorm(xn, x, kernels.Tensor{}, m.opts.Eps, false)
	mix, err := ws.Get("hc.mix", x.Rows, width)
	if err != nil {
		return nil, err
	}
	b.MatMul(mix, xn, s.fn)
	host := ws.Float32s("hc.mixh", x.Rows*width)
	if err := b.Read(host, mix); err != nil {
		return nil, err
	}
	return host, nil
}

// collapse returns Σ_i w[t·hc+i]·X_i for every row t of x.
func (m *Model) collapse(x kernels.Tensor, w []float32, name string) (kernels.Tensor, error) {
	b, ws, hc, h := m.b, m.ws, m.opts.HCMult, m.opts.Hidden
	n := x.Rows
	a, err := ws.Get(name+".a", n, h)
	if err != nil {
		return kernels.Tensor{}, err
	}
	rows := ws.Int32s(name+".rows", n*hc)
	for i := range rows {
		rows[i] = int32(i / hc)
	}
	b.Fill(a, 0)
	b.ScatterAdd(a, x.Reshape(n*hc, h), rows, w)
	return a, nil
}

// sinkhorn writes the doubly-stochastic mixing matrix of one row into c
// (hc×hc): softmax over each row of mix·scale + base, plus eps, one column
// normalization, then iters-1 row-then-column normalizations, each
// dividing by the sum plus eps (transformers 5.17 and DeepSeek's
// hc_split_sinkhorn alike).
func sinkhorn(c, mix, base []float32, scale float32, hc, iters int, eps float32) {
	for i := 0; i < hc; i++ {
		r := c[i*hc : (i+1)*hc]
		mx := float32(math.Inf(-1))
		for j := range r {
			r[j] = mix[i*hc+j]*scale + base[i*hc+j]
			mx = max(mx, r[j])
		}
		var sum float32
		for j := range r {
			r[j] = float32(math.Exp(float64(r[j] - mx)))
			sum += r[j]
		}
		for j := range r {
			r[j] = r[j]/sum + eps
		}
	}
	cols := func() {
		for j := 0; j < hc; j++ {
			var s float32
			for i := 0; i < hc; i++ {
				s += c[i*hc+j]
			}
			for i := 0; i < hc; i++ {
				c[i*hc+j] /= s + eps
			}
		}
	}
	cols()
	for it := 1; it < iters; it++ {
		for i := 0; i < hc; i++ {
			var s float32
			for j := 0; j < hc; j++ {
				s += c[i*hc+j]
			}
			for j := 0; j < hc; j++ {
				c[i*hc+j] /= s + eps
			}
		}
		cols()
	}
}

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// hcPost writes the new streams X'_j = post_j·y + Σ_i comb[i][j]·X_i into
// dst.
func (m *Model) hcPost(dst, x, y kernels.Tensor, post, comb []float32) {
	b, ws, hc, h := m.b, m.ws, m.opts.HCMult, m.opts.Hidden
	n := x.Rows
	dv, xv := dst.Reshape(n*hc, h), x.Reshape(n*hc, h)
	b.Fill(dst, 0)
	for j := 0; j < hc; j++ {
		rows := ws.Int32s(fmt.Sprintf("hc.prow%d", j), n)
		w := ws.Float32s(fmt.Sprintf("hc.pw%d", j), n)
		for t := range rows {
			rows[t], w[t] = int32(t*hc+j), post[t*hc+j]
		}
		b.ScatterAdd(dv, y, rows, w)
	}
	for j := 0; j < hc; j++ {
		rows := ws.Int32s(fmt.Sprintf("hc.crow%d", j), n*hc)
		w := ws.Float32s(fmt.Sprintf("hc.cw%d", j), n*hc)
		for t := 0; t < n; t++ {
			for i := 0; i < hc; i++ {
				rows[t*hc+i], w[t*hc+i] = int32(t*hc+j), comb[t*hc*hc+i*hc+j]
			}
		}
		b.ScatterAdd(dv, xv, rows, w)
	}
}

// moe writes the layer's feed-forward output for the normed rows x into y:
// the routed experts (chosen by the router, or by the hash table from the
// input tokens) plus the shared expert.
func (m *Model) moe(ctx context.Context, layer int, f *ffn, step *model.Step, x, y kernels.Tensor) error {
	b, ws, o := m.b, m.ws, m.opts
	n := x.Rows
	if f.hash == nil {
		if err := f.block.Forward(ctx, b, ws, x, y); err != nil {
			return err
		}
	} else {
		ne := o.LayerExperts(layer)
		logits, err := ws.Get("moe.hlogits", n, ne)
		if err != nil {
			return err
		}
		f.router.Forward(b, logits, x)
		host := ws.Float32s("moe.hlogitsh", n*ne)
		if err := b.Read(host, logits); err != nil {
			return err
		}
		k := o.TopK
		idx := ws.Int32s("moe.hidx", n*k)
		wts := ws.Float32s("moe.hw", n*k)
		for t := 0; t < n; t++ {
			tok := int(step.Tokens[t])
			ids := f.hash[tok*k : (tok+1)*k]
			var sum float32
			for j, e := range ids {
				s := score(o.Score, host[t*ne+int(e)])
				idx[t*k+j], wts[t*k+j] = e, s
				sum += s
			}
			for j := range ids {
				wts[t*k+j] = wts[t*k+j] / sum * o.RouteScale
			}
		}
		if err := f.block.ForwardChosen(ctx, b, ws, x, y, idx, wts); err != nil {
			return err
		}
	}
	sy, err := ws.Get("shared.out", n, o.Hidden)
	if err != nil {
		return err
	}
	if err := f.shared.Forward(b, ws, sy, x); err != nil {
		return err
	}
	b.Add(y, y, sy)
	return nil
}

// score is the router's score of one logit, as the kernels' Route
// computes it.
func score(f kernels.ScoreFunc, x float32) float32 {
	if f == kernels.Sigmoid {
		return sigmoid(x)
	}
	v := float64(x)
	if v <= 20 {
		v = math.Log1p(math.Exp(v))
	}
	return float32(math.Sqrt(v))
}

// logits runs the HyperHead, the final norm and the head on the rows that
// need logits.
func (m *Model) logits(step *model.Step, x kernels.Tensor) (*model.Output, error) {
	b, ws, o := m.b, m.ws, m.opts
	r := len(step.LogitRows)
	if r == 0 {
		return step.SplitLogits(nil, o.Vocab), nil
	}
	hc := o.HCMult
	sel, err := ws.Get("final.x", r, hc*o.Hidden)
	if err != nil {
		return nil, err
	}
	b.Gather(sel, x, step.LogitRows)
	mix, err := m.hcMix(&m.hcHead, sel, hc)
	if err != nil {
		return nil, err
	}
	pre := ws.Float32s("final.pre", r*hc)
	for t := 0; t < r; t++ {
		for i := 0; i < hc; i++ {
			pre[t*hc+i] = sigmoid(mix[t*hc+i]*m.hcHead.scale[0]+m.hcHead.base[i]) + o.HCEps
		}
	}
	a, err := m.collapse(sel, pre, "final")
	if err != nil {
		return nil, err
	}
	b.RMSNorm(a, a, m.norm, o.Eps, false)
	lg, err := ws.Get("final.logits", r, o.Vocab)
	if err != nil {
		return nil, err
	}
	b.MatMul(lg, a, m.head)
	host := ws.Float32s("final.host", r*o.Vocab)
	if err := b.Read(host, lg); err != nil {
		return nil, err
	}
	return step.SplitLogits(host, o.Vocab), nil
}
