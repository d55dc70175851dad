// Package gptoss is the gpt_oss architecture (gpt-oss-20b, gpt-oss-120b):
// RMSNorm pre-norm decoder layers with grouped-query attention (q/k/v/o
// biases, YaRN rotary embedding, a learned sink logit per head that joins
// the softmax and is dropped), layers alternating sliding-window and full
// attention as layer_types says, and a routed MoE feed-forward on every
// layer (router with bias, softmax over the top-k logits, experts with
// interleaved gate/up rows, per-expert biases and the clamped SwiGLU
// g·σ(1.702·g)·(u+1)); final RMSNorm and a separate head.
//
// Experts load from the original MXFP4 blocks (zero-copy, computed on by
// the kernels as stored), MLX conversions (mxfp4 mode, any affine
// attention) and transformers' dequantized input-major form (transposed at
// load). The cache is a kvcache.Rotating: sliding layers hold their window,
// full layers the sequence.
package gptoss

import (
	"context"
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/attention"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/moe"
)

// ModelType is config.json's model_type for this package.
const ModelType = "gpt_oss"

// Model is a loaded gpt_oss checkpoint.
type Model struct {
	b       kernels.Backend
	opts    Options
	weights *model.Weights
	store   moe.Store
	ws      *model.Workspace

	embed  kernels.Weight
	layers []layer
	norm   kernels.Tensor
	head   kernels.Weight

	info model.Info
}

type layer struct {
	attnNorm, mlpNorm kernels.Tensor
	attn              *attention.Block
	moe               *moe.Block
}

// LoadOptions tune loading.
type LoadOptions struct {
	// Store, when set, supplies the routed experts instead of the resident
	// store bound from the checkpoint. Its experts must follow gpt-oss's
	// conventions (moe.Expert's Interleaved and bias fields).
	Store moe.Store
}

// Loader is Load with the default options, as a model.LoadFunc.
func Loader(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend) (model.Model, error) {
	return Load(ctx, dir, cfg, b, LoadOptions{})
}

// Load binds the checkpoint in dir (whose config is cfg) to backend b.
func Load(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend, lo LoadOptions) (*Model, error) {
	opts, err := ParseOptions(cfg)
	if err != nil {
		return nil, err
	}
	return model.BindWeights(dir, cfg, b, func(w *model.Weights) (*Model, error) {
		m := &Model{b: b, opts: opts, weights: w, ws: model.NewWorkspace(b)}
		return m, m.bind(ctx, lo)
	})
}

func (m *Model) bind(ctx context.Context, lo LoadOptions) error {
	o := m.opts
	w := m.weights
	var err error
	if m.embed, err = w.Linear("model.embed_tokens", o.Vocab, o.Hidden); err != nil {
		return err
	}
	if m.norm, err = w.Vector("model.norm.weight", o.Hidden, 0); err != nil {
		return err
	}
	if m.head, err = w.Head("lm_head", o.Vocab, o.Hidden, m.embed, o.TiedEmbeddings); err != nil {
		return err
	}
	resident := map[int][]*moe.Expert{}
	var activeBytes, extra int64
	for i := 0; i < o.Layers; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := fmt.Sprintf("model.layers.%d.", i)
		var l layer
		if l.attnNorm, err = w.Vector(p+"input_layernorm.weight", o.Hidden, 0); err != nil {
			return err
		}
		if l.mlpNorm, err = w.Vector(p+"post_attention_layernorm.weight", o.Hidden, 0); err != nil {
			return err
		}
		a := &attention.Block{Layer: i, Heads: o.Heads, KVHeads: o.KVHeads, HeadDim: o.HeadDim, RoPE: o.RoPE}
		if o.Sliding[i] {
			a.Window = o.Window
		}
		if err := a.LoadProjections(w, p+"self_attn.", o.Hidden); err != nil {
			return err
		}
		if a.Sinks, err = w.Vector(p+"self_attn.sinks", o.Heads, 0); err != nil {
			return err
		}
		l.attn = a
		activeBytes += model.LinearBytes(a.Q, a.K, a.V, a.O)
		ne := o.LayerExperts(i)
		router, err := w.LoadLinear(p+"mlp.router", ne, o.Hidden)
		if err != nil {
			return err
		}
		l.moe = &moe.Block{Layer: i, Router: router, Act: o.Act, Routing: kernels.Routing{K: o.TopK, Score: kernels.SoftmaxTopK}}
		activeBytes += model.LinearBytes(router)
		if lo.Store == nil {
			eb := &expertBinder{w: w, b: m.b, n: ne, hidden: o.Hidden, inter: o.ExpertWidth}
			es, err := eb.bind(p + "mlp.")
			if err != nil {
				return err
			}
			resident[i] = es
			activeBytes += int64(o.TopK) * es[0].Bytes()
			extra += eb.copied + eb.vectors
		}
		m.layers = append(m.layers, l)
	}
	blocks := make([]*moe.Block, len(m.layers))
	for i, l := range m.layers {
		blocks[i] = l.moe
	}
	if m.store, err = moe.UseStore(w.Dir, lo.Store, resident, blocks, o.LayerExperts); err != nil {
		return err
	}
	activeBytes += model.WeightBytes(m.head) + model.WeightBytes(m.embed)/int64(o.Vocab) // the head, and one embedding row
	m.info = model.Info{
		ModelType: ModelType, Vocab: o.Vocab, Layers: o.Layers, Hidden: o.Hidden, MaxContext: o.MaxPositions,
		WeightBytes: w.BoundBytes() + extra, ActiveBytes: activeBytes, Backend: m.b.Name(),
	}
	return nil
}

// Info implements model.Model.
func (m *Model) Info() model.Info { return m.info }

// Options returns the decoded options.
func (m *Model) Options() Options { return m.opts }

// CacheSpec returns the cache shape for a capacity and storage type:
// sliding layers with the model's window, full layers with none.
func (m *Model) CacheSpec(capacity int, dt kernels.DType) kvcache.RotatingSpec {
	o := m.opts
	s := kvcache.RotatingSpec{DType: dt, Capacity: capacity}
	for i := 0; i < o.Layers; i++ {
		l := kvcache.WindowLayer{KV: kvcache.LayerShape{K: o.KVHeads * o.HeadDim, V: o.KVHeads * o.HeadDim}}
		if o.Sliding[i] {
			l.Window = o.Window
		}
		s.Layers = append(s.Layers, l)
	}
	return s
}

// NewCache implements model.Model: a rotating cache, whose sliding layers
// hold the window, not the context.
func (m *Model) NewCache(capacity int, dt kernels.DType) (kvcache.Cache, error) {
	if capacity <= 0 || capacity > m.opts.MaxPositions {
		capacity = m.opts.MaxPositions
	}
	return kvcache.NewRotating(m.b, m.CacheSpec(capacity, dt))
}

// Close implements model.Model.
func (m *Model) Close() error {
	err := m.store.Close()
	if e := m.weights.Close(); err == nil {
		err = e
	}
	return err
}

// Forward implements model.Model.
func (m *Model) Forward(ctx context.Context, batch *model.Batch) (*model.Output, error) {
	step, err := model.BeginStep(batch, m.opts.Vocab, m.opts.MaxPositions)
	if err != nil {
		return nil, err
	}
	out, err := m.forward(ctx, step, nil)
	if err := step.End(m.b, err); err != nil {
		return nil, err
	}
	return out, nil
}

// forward runs the layers; after each, when hidden is set, it reads the
// hidden states into it.
func (m *Model) forward(ctx context.Context, step *model.Step, hidden *[][]float32) (*model.Output, error) {
	b, ws, o := m.b, m.ws, m.opts
	n := step.Rows
	x, err := ws.Get("x", n, o.Hidden)
	if err != nil {
		return nil, err
	}
	a, err := ws.Get("a", n, o.Hidden)
	if err != nil {
		return nil, err
	}
	y, err := ws.Get("y", n, o.Hidden)
	if err != nil {
		return nil, err
	}
	b.Embed(x, m.embed, step.Tokens)
	for i := range m.layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l := &m.layers[i]
		b.RMSNorm(a, x, l.attnNorm, o.Eps, false)
		if err := l.attn.Forward(ctx, b, ws, step, a, y); err != nil {
			return nil, err
		}
		b.Add(x, x, y)
		b.RMSNorm(a, x, l.mlpNorm, o.Eps, false)
		if err := l.moe.Forward(ctx, b, ws, a, y); err != nil {
			return nil, err
		}
		b.Add(x, x, y)
		if hidden != nil {
			h := make([]float32, n*o.Hidden)
			if err := b.Read(h, x); err != nil {
				return nil, err
			}
			*hidden = append(*hidden, h)
		}
	}
	if err := b.Sync(); err != nil {
		return nil, err
	}
	return m.logits(step, x)
}

// logits runs the final norm and the head on the rows that need logits.
func (m *Model) logits(step *model.Step, x kernels.Tensor) (*model.Output, error) {
	return model.FinalHead{Norm: m.norm, Eps: m.opts.Eps, W: m.head}.Logits(m.b, m.ws, step, x)
}

// Hidden runs the step and returns every row's hidden state after each
// layer (for bisecting parity failures against layer_outputs). It commits
// the step like Forward.
func (m *Model) Hidden(ctx context.Context, batch *model.Batch) ([][]float32, error) {
	step, err := model.BeginStep(batch, m.opts.Vocab, m.opts.MaxPositions)
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
