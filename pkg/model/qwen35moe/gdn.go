package qwen35moe

import (
	"context"
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
)

// DeltaNet is one Gated DeltaNet (linear-attention) layer: projections of
// the normed hidden states to q‖k‖v, the output gate z and the decay and β
// inputs; a causal depthwise convolution over q‖k‖v with its rolling state;
// the gated delta rule over each sequence's recurrent state; a gated
// RMSNorm per value head; the output projection.
type DeltaNet struct {
	// Layer is the cache layer this block reads and writes.
	Layer                int
	QKV, Z, B, A, Out    *model.Linear
	ConvW                kernels.Tensor // K × conv channels, f32
	ALog, DtBias         kernels.Tensor // 1 × value heads, f32
	Norm                 kernels.Tensor // 1 × value head dim, plain weight
	KeyHeads, ValueHeads int
	KeyDim, ValueDim     int
	Eps                  float32
	// Chunk is the chunk length of the chunked delta rule for steps of
	// more than one token (0: always the recurrence).
	Chunk int
}

func (d *DeltaNet) keyWidth() int   { return d.KeyHeads * d.KeyDim }
func (d *DeltaNet) convDim() int    { return 2*d.keyWidth() + d.valueWidth() }
func (d *DeltaNet) valueWidth() int { return d.ValueHeads * d.ValueDim }

// LinearShape is the cache state the layer keeps per sequence.
func (d *DeltaNet) LinearShape() kvcache.LinearShape {
	return kvcache.LinearShape{ConvRows: d.ConvW.Rows - 1, Channels: d.convDim(), StateRows: d.ValueHeads * d.KeyDim, StateCols: d.ValueDim}
}

// Forward writes the layer's output for x (the normed hidden states of
// every row of the step) into out.
func (d *DeltaNet) Forward(ctx context.Context, b kernels.Backend, ws *model.Workspace, step *model.Step, x, out kernels.Tensor) error {
	n := x.Rows
	qkv, err := ws.Get("gdn.qkv", n, d.convDim())
	if err != nil {
		return err
	}
	conv, err := ws.Get("gdn.conv", n, d.convDim())
	if err != nil {
		return err
	}
	z, err := ws.Get("gdn.z", n, d.valueWidth())
	if err != nil {
		return err
	}
	core, err := ws.Get("gdn.core", n, d.valueWidth())
	if err != nil {
		return err
	}
	bt, err := ws.Get("gdn.b", n, d.ValueHeads)
	if err != nil {
		return err
	}
	at, err := ws.Get("gdn.a", n, d.ValueHeads)
	if err != nil {
		return err
	}
	d.QKV.Forward(b, qkv, x)
	d.Z.Forward(b, z, x)
	d.B.Forward(b, bt, x)
	d.A.Forward(b, at, x)
	g := kernels.GatedDelta{KHeads: d.KeyHeads, VHeads: d.ValueHeads, KDim: d.KeyDim, VDim: d.ValueDim,
		ALog: d.ALog, DtBias: d.DtBias, L2Norm: true}
	kw := d.keyWidth()
	for i, s := range step.Batch.Seqs {
		if err := ctx.Err(); err != nil {
			return err
		}
		lc, ok := s.Cache.(kvcache.LinearCache)
		if !ok {
			return fmt.Errorf("linear attention layer %d: sequence %d's cache (%T) keeps no recurrent state; use the model's NewCache", d.Layer, i, s.Cache)
		}
		v, err := lc.LinearState(d.Layer)
		if err != nil {
			return fmt.Errorf("linear attention layer %d: %w", d.Layer, err)
		}
		r0, r1 := step.SeqRows(i)
		// Run the sequence's rows in segments ending at every requested
		// snapshot, copying the state out after each.
		convIn, stIn := v.Conv, v.State
		prev := 0
		ends := append(append([]int(nil), v.Cuts...), r1-r0)
		for j, end := range ends {
			if end == prev {
				if j < len(v.Cuts) {
					b.Copy(v.SnapConv[j], convIn)
					b.Copy(v.SnapState[j], stIn)
				}
				continue
			}
			rows := func(t kernels.Tensor) kernels.Tensor { return t.RowRange(r0+prev, r0+end) }
			if err := kernels.CausalConv1D(b, rows(conv), rows(qkv), d.ConvW, convIn, v.NewConv, kernels.Conv1D{SiLU: true}); err != nil {
				return fmt.Errorf("linear attention layer %d: %w", d.Layer, err)
			}
			c := rows(conv)
			g.Chunk = 0
			if end-prev > 1 {
				g.Chunk = d.Chunk
			}
			if err := kernels.GatedDeltaNet(b, rows(core), c.ColRange(0, kw), c.ColRange(kw, 2*kw), c.ColRange(2*kw, d.convDim()),
				rows(at), rows(bt), stIn, v.NewState, g); err != nil {
				return fmt.Errorf("linear attention layer %d: %w", d.Layer, err)
			}
			convIn, stIn = v.NewConv, v.NewState
			if j < len(v.Cuts) {
				b.Copy(v.SnapConv[j], v.NewConv)
				b.Copy(v.SnapState[j], v.NewState)
			}
			prev = end
		}
	}
	// Gated RMSNorm per value head: (o/rms(o)·w)·silu(z).
	heads := core.Reshape(n*d.ValueHeads, d.ValueDim)
	b.RMSNorm(heads, heads, d.Norm, d.Eps, false)
	b.Activate(heads, z.Reshape(n*d.ValueHeads, d.ValueDim), heads, kernels.Activation{Kind: kernels.SiLU})
	d.Out.Forward(b, out, core)
	return nil
}

// loadDeltaNet binds prefix's linear_attn tensors (prefix ends in
// "linear_attn.").
func loadDeltaNet(w *model.Weights, b kernels.Backend, prefix string, layer int, o Options) (*DeltaNet, int64, error) {
	d := &DeltaNet{Layer: layer, KeyHeads: o.LinearKeyHeads, ValueHeads: o.LinearValueHeads, KeyDim: o.LinearKeyDim,
		ValueDim: o.LinearValueDim, Eps: o.Eps, Chunk: ChunkSize}
	var err error
	if d.QKV, err = w.LoadLinear(prefix+"in_proj_qkv", d.convDim(), o.Hidden); err != nil {
		return nil, 0, err
	}
	if d.Z, err = w.LoadLinear(prefix+"in_proj_z", d.valueWidth(), o.Hidden); err != nil {
		return nil, 0, err
	}
	if d.B, err = w.LoadLinear(prefix+"in_proj_b", d.ValueHeads, o.Hidden); err != nil {
		return nil, 0, err
	}
	if d.A, err = w.LoadLinear(prefix+"in_proj_a", d.ValueHeads, o.Hidden); err != nil {
		return nil, 0, err
	}
	if d.Out, err = w.LoadLinear(prefix+"out_proj", o.Hidden, d.valueWidth()); err != nil {
		return nil, 0, err
	}
	if d.ALog, err = w.Vector(prefix+"A_log", d.ValueHeads, 0); err != nil {
		return nil, 0, err
	}
	if d.DtBias, err = w.Vector(prefix+"dt_bias", d.ValueHeads, 0); err != nil {
		return nil, 0, err
	}
	if d.Norm, err = w.Vector(prefix+"norm.weight", d.ValueDim, 0); err != nil {
		return nil, 0, err
	}
	if d.ConvW, err = convWeight(w, b, prefix+"conv1d", d.convDim(), o.ConvKernel); err != nil {
		return nil, 0, err
	}
	copied := int64(4 * d.ConvW.Elems())
	return d, copied, nil
}

// convWeight reads the depthwise convolution weight, [C, 1, K]
// (transformers) or [C, K, 1] (mlx-lm) — the same values in the same order
// — into a K×C f32 tensor, the layout the convolution kernel reads.
func convWeight(w *model.Weights, b kernels.Backend, base string, c, k int) (kernels.Tensor, error) {
	t, err := w.Matrix(base)
	if err != nil {
		return kernels.Tensor{}, err
	}
	if len(t.Shape) != 3 || int(t.Shape[0]) != c || int(t.Shape[1]*t.Shape[2]) != k || (t.Shape[1] != 1 && t.Shape[2] != 1) {
		return kernels.Tensor{}, fmt.Errorf("%s: tensor %q has shape %v, want [%d, 1, %d] or [%d, %d, 1] from config.json", w.Dir, t.Name, t.Shape, c, k, c, k)
	}
	vals := t.M.Dequantize() // plain or quantized, in f32
	kc := make([]float32, k*c)
	for ch := 0; ch < c; ch++ {
		for j := 0; j < k; j++ {
			kc[j*c+ch] = vals[ch*k+j]
		}
	}
	out, err := b.Alloc(kernels.F32, k, c)
	if err != nil {
		return kernels.Tensor{}, err
	}
	return out, b.Write(out, kc)
}
