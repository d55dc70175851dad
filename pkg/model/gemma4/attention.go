package gemma4

import (
	"context"
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
)

// attention is one Gemma 4 attention layer. It differs from the shared
// attention block in three ways: values get an unweighted RMSNorm, full
// layers with attention_k_eq_v take their values from the key projection
// (before k_norm and RoPE), and KV-shared layers project only queries and
// attend over the keys and values another layer stored in this step.
type attention struct {
	layer int
	spec  Layer
	// q and o always; k and v (v nil when spec.KEqV) only on layers that
	// own keys and values.
	q, k, v, o   *model.Linear
	qNorm, kNorm kernels.Tensor
	eps          float32
}

// views holds, per layer and sequence, the keys and values a layer stored
// in the current step, for the KV-shared layers that read them.
type views [][]kvcache.View

// forward writes the layer's output for x (normed hidden states, every row
// of the step) into out.
func (a *attention) forward(ctx context.Context, b kernels.Backend, ws *model.Workspace, step *model.Step, kv views, x, out kernels.Tensor) error {
	s := a.spec
	n := x.Rows
	qd, kd := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	q, err := ws.Get("attn.q", n, qd)
	if err != nil {
		return err
	}
	o, err := ws.Get("attn.o", n, qd)
	if err != nil {
		return err
	}
	a.q.Forward(b, q, x)
	qh := q.Reshape(n*s.Heads, s.HeadDim)
	b.RMSNorm(qh, qh, a.qNorm, a.eps, false)
	b.RoPE(q, step.Pos, s.RoPE)

	var k, v kernels.Tensor
	if s.SharesKV < 0 {
		if k, err = ws.Get("attn.k", n, kd); err != nil {
			return err
		}
		if v, err = ws.Get("attn.v", n, kd); err != nil {
			return err
		}
		a.k.Forward(b, k, x)
		vh := v.Reshape(n*s.KVHeads, s.HeadDim)
		if a.v != nil {
			a.v.Forward(b, v, x)
			b.RMSNorm(vh, vh, kernels.Tensor{}, a.eps, false)
		} else {
			// k = v: the values are the raw key projection, normed
			// without a weight, before k_norm and RoPE touch the keys.
			b.RMSNorm(vh, k.Reshape(n*s.KVHeads, s.HeadDim), kernels.Tensor{}, a.eps, false)
		}
		kh := k.Reshape(n*s.KVHeads, s.HeadDim)
		b.RMSNorm(kh, kh, a.kNorm, a.eps, false)
		b.RoPE(k, step.Pos, s.RoPE)
	}
	for i, seq := range step.Batch.Seqs {
		if err := ctx.Err(); err != nil {
			return err
		}
		r0, r1 := step.SeqRows(i)
		var view kvcache.View
		if s.SharesKV >= 0 {
			// The view the source layer's Update returned this step: its
			// buffers are not written again until that layer's next
			// Update, in the next step.
			view = kv[s.SharesKV][i]
		} else {
			if view, err = seq.Cache.Update(s.Slot, k.RowRange(r0, r1), v.RowRange(r0, r1)); err != nil {
				return fmt.Errorf("attention layer %d: %w", a.layer, err)
			}
			if kv[a.layer] != nil {
				kv[a.layer][i] = view
			}
		}
		b.Attention(o.RowRange(r0, r1), q.RowRange(r0, r1), view.K, view.V, kernels.Attention{
			Heads: s.Heads, KVHeads: s.KVHeads, HeadDim: s.HeadDim,
			Scale: 1, // Gemma 4 scales nothing: q_norm and k_norm set the magnitude
			QPos:  step.SeqPos(i), NumKeys: view.NumKeys, KPos: view.KPos,
			Causal: true, Window: s.Window,
		})
	}
	a.o.Forward(b, out, o)
	return nil
}
