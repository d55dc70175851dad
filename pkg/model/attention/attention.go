// Package attention is the grouped-query attention block the architectures
// share: q/k/v projections (optional biases), optional per-head q/k RMSNorm
// (plain or 1+w), rotary embedding of any variant (kernels.RoPE), scaled
// dot-product attention over each sequence's cache (causal, sliding window,
// sinks, softcap) and the output projection. The batch's rows are projected
// together; attention itself runs per sequence over that sequence's cache.
package attention

import (
	"context"
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/model"
)

// Block is one attention layer.
type Block struct {
	// Layer is the cache layer this block reads and writes.
	Layer      int
	Q, K, V, O *model.Linear
	// QNorm and KNorm are per-head RMSNorm weights (1×HeadDim) or zero.
	QNorm, KNorm kernels.Tensor
	// NormAddOne selects the (1+w) form for QNorm/KNorm.
	NormAddOne bool
	NormEps    float32
	Heads      int
	KVHeads    int
	HeadDim    int
	// RoPE rotates q and k (Dims 0: no rotary embedding).
	RoPE kernels.RoPE
	// Scale multiplies q·k (0: 1/√HeadDim).
	Scale   float32
	Window  int
	Sinks   kernels.Tensor
	Softcap float32
	// OutputGate: Q emits, per head, the query followed by as many gate
	// values, and the attention output is multiplied by σ(gate) before O
	// (qwen3_5_moe's gated attention).
	OutputGate bool
}

// LoadProjections binds prefix{q,k,v,o}_proj and their optional biases
// for the block's heads over rows of hidden: q with Heads·HeadDim outputs
// (twice that with an OutputGate), k and v with KVHeads·HeadDim, o back to
// hidden.
func (a *Block) LoadProjections(w *model.Weights, prefix string, hidden int) error {
	qd, kd := a.Heads*a.HeadDim, a.KVHeads*a.HeadDim
	qOut := qd
	if a.OutputGate {
		qOut = 2 * qd
	}
	var err error
	if a.Q, err = w.LoadLinear(prefix+"q_proj", qOut, hidden); err != nil {
		return err
	}
	if a.K, err = w.LoadLinear(prefix+"k_proj", kd, hidden); err != nil {
		return err
	}
	if a.V, err = w.LoadLinear(prefix+"v_proj", kd, hidden); err != nil {
		return err
	}
	a.O, err = w.LoadLinear(prefix+"o_proj", hidden, qd)
	return err
}

// Forward writes the block's output for x (the normed hidden states of
// every row of the step) into out.
func (a *Block) Forward(ctx context.Context, b kernels.Backend, ws *model.Workspace, step *model.Step, x, out kernels.Tensor) error {
	n := x.Rows
	qd, kd := a.Heads*a.HeadDim, a.KVHeads*a.HeadDim
	q, err := ws.Get("attn.q", n, qd)
	if err != nil {
		return err
	}
	k, err := ws.Get("attn.k", n, kd)
	if err != nil {
		return err
	}
	v, err := ws.Get("attn.v", n, kd)
	if err != nil {
		return err
	}
	o, err := ws.Get("attn.o", n, qd)
	if err != nil {
		return err
	}
	var gate kernels.Tensor
	qdst := q
	if a.OutputGate {
		if qdst, err = ws.Get("attn.qg", n, 2*qd); err != nil {
			return err
		}
	}
	// The query (with its gate), key and value projections in one
	// dispatch, then their biases.
	kernels.MatMulMulti(b, []kernels.Tensor{qdst, k, v}, x, []kernels.Weight{a.Q.W, a.K.W, a.V.W})
	for _, p := range []struct {
		l *model.Linear
		t kernels.Tensor
	}{{a.Q, qdst}, {a.K, k}, {a.V, v}} {
		if !p.l.Bias.IsZero() {
			b.Add(p.t, p.t, p.l.Bias)
		}
	}
	if a.OutputGate {
		heads := qdst.Reshape(n*a.Heads, 2*a.HeadDim)
		b.Copy(q.Reshape(n*a.Heads, a.HeadDim), heads.ColRange(0, a.HeadDim))
		gate = heads.ColRange(a.HeadDim, 2*a.HeadDim)
	}
	if !a.QNorm.IsZero() {
		qh := q.Reshape(n*a.Heads, a.HeadDim)
		b.RMSNorm(qh, qh, a.QNorm, a.NormEps, a.NormAddOne)
	}
	if !a.KNorm.IsZero() {
		kh := k.Reshape(n*a.KVHeads, a.HeadDim)
		b.RMSNorm(kh, kh, a.KNorm, a.NormEps, a.NormAddOne)
	}
	if a.RoPE.Dims > 0 {
		b.RoPE(q, step.Pos, a.RoPE)
		b.RoPE(k, step.Pos, a.RoPE)
	}
	scale := a.Scale
	if scale == 0 {
		scale = 1 / sqrt32(float32(a.HeadDim))
	}
	for i, s := range step.Batch.Seqs {
		if err := ctx.Err(); err != nil {
			return err
		}
		r0, r1 := step.SeqRows(i)
		view, err := s.Cache.Update(a.Layer, k.RowRange(r0, r1), v.RowRange(r0, r1))
		if err != nil {
			return fmt.Errorf("attention layer %d: %w", a.Layer, err)
		}
		b.Attention(o.RowRange(r0, r1), q.RowRange(r0, r1), view.K, view.V, kernels.Attention{
			Heads: a.Heads, KVHeads: a.KVHeads, HeadDim: a.HeadDim, Scale: scale,
			QPos: step.SeqPos(i), NumKeys: view.NumKeys, KPos: view.KPos,
			Causal: true, Window: a.Window, Sinks: a.Sinks, Softcap: a.Softcap,
		})
	}
	if a.OutputGate {
		oh := o.Reshape(n*a.Heads, a.HeadDim)
		if err := kernels.SigmoidMul(b, oh, gate, oh); err != nil {
			return fmt.Errorf("attention layer %d: %w", a.Layer, err)
		}
	}
	a.O.Forward(b, out, o)
	return nil
}
