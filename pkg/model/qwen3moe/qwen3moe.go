// Package qwen3moe is the qwen3_moe architecture (Qwen3-30B-A3B,
// Qwen3-235B-A22B, Qwen3-Coder): RMSNorm pre-norm decoder layers with
// grouped-query attention (per-head q/k RMSNorm, half-split RoPE over the
// whole head) and a routed MoE feed-forward (softmax over all experts,
// top-k, optional renormalization, SwiGLU experts, no shared expert) or a
// dense MLP on mlp_only_layers / decoder_sparse_step layers; final RMSNorm
// and a tied or separate head.
//
// It is the pattern for the other architectures: decode the options this
// architecture needs from the text config (options.go), bind weights by
// name (Load), wire the shared blocks (Forward).
package qwen3moe

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
const ModelType = "qwen3_moe"

// Model is a loaded qwen3_moe checkpoint.
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
	moe               *moe.Block // nil on dense layers
	mlp               *model.MLP // dense layers
}

// LoadOptions tune loading.
type LoadOptions struct {
	// Store, when set, supplies the routed experts instead of the resident
	// store bound from the checkpoint (the streaming store of a later
	// issue plugs in here).
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
	var activeBytes int64
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
		a := &attention.Block{Layer: i, Heads: o.Heads, KVHeads: o.KVHeads, HeadDim: o.HeadDim, NormEps: o.Eps, RoPE: o.RoPE, Window: o.Window}
		if err := a.LoadProjections(w, p+"self_attn.", o.Hidden); err != nil {
			return err
		}
		if a.QNorm, err = w.Vector(p+"self_attn.q_norm.weight", o.HeadDim, 0); err != nil {
			return err
		}
		if a.KNorm, err = w.Vector(p+"self_attn.k_norm.weight", o.HeadDim, 0); err != nil {
			return err
		}
		l.attn = a
		activeBytes += model.LinearBytes(a.Q, a.K, a.V, a.O)
		if o.MoE[i] {
			router, err := w.LoadLinear(p+"mlp.gate", o.LayerExperts(i), o.Hidden)
			if err != nil {
				return err
			}
			l.moe = &moe.Block{Layer: i, Router: router, Act: kernels.Activation{Kind: kernels.SiLU},
				Routing: kernels.Routing{K: o.TopK, Score: kernels.SoftmaxAll, Normalize: o.NormTopK}}
			activeBytes += model.LinearBytes(router)
			if lo.Store == nil {
				es, err := moe.BindExperts(w, p+"mlp.", o.LayerExperts(i), o.Hidden, o.ExpertWidth)
				if err != nil {
					return err
				}
				resident[i] = es
				activeBytes += int64(o.TopK) * es[0].Bytes()
			}
		} else {
			if l.mlp, err = w.LoadMLP(p+"mlp", o.Hidden, o.Intermediate, kernels.Activation{Kind: kernels.SiLU}); err != nil {
				return err
			}
			activeBytes += model.LinearBytes(l.mlp.Gate, l.mlp.Up, l.mlp.Down)
		}
		m.layers = append(m.layers, l)
	}
	blocks := make([]*moe.Block, len(m.layers))
	// Each MoE block knows the next one, for early routing under expert
	// streaming (moe.Block.Next).
	var prev *moe.Block
	for i, l := range m.layers {
		if l.moe != nil {
			if prev != nil {
				prev.Next = l.moe
			}
			prev = l.moe
		}
		blocks[i] = l.moe
	}
	if m.store, err = moe.UseStore(w.Dir, lo.Store, resident, blocks, o.LayerExperts); err != nil {
		return err
	}
	activeBytes += model.WeightBytes(m.head) + model.WeightBytes(m.embed)/int64(o.Vocab) // the head, and one embedding row
	m.info = model.Info{
		ModelType: ModelType, Vocab: o.Vocab, Layers: o.Layers, Hidden: o.Hidden, MaxContext: o.MaxPositions,
		WeightBytes: w.BoundBytes(), ActiveBytes: activeBytes, Backend: m.b.Name(),
	}
	return nil
}

// Info implements model.Model.
func (m *Model) Info() model.Info { return m.info }

// Options returns the decoded options.
func (m *Model) Options() Options { return m.opts }

// CacheSpec returns the cache shape for a capacity and storage type.
func (m *Model) CacheSpec(capacity int, dt kernels.DType) kvcache.Spec {
	shapes := make([]kvcache.LayerShape, m.opts.Layers)
	for i := range shapes {
		shapes[i] = kvcache.LayerShape{K: m.opts.KVHeads * m.opts.HeadDim, V: m.opts.KVHeads * m.opts.HeadDim}
	}
	return kvcache.Spec{Layers: shapes, DType: dt, Capacity: capacity}
}

// NewCache implements model.Model.
func (m *Model) NewCache(capacity int, dt kernels.DType) (kvcache.Cache, error) {
	if capacity <= 0 || capacity > m.opts.MaxPositions {
		capacity = m.opts.MaxPositions
	}
	return kvcache.NewStandard(m.b, m.CacheSpec(capacity, dt))
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
	out, err := m.forward(ctx, step)
	if err := step.End(m.b, err); err != nil {
		return nil, err
	}
	return out, nil
}

func (m *Model) forward(ctx context.Context, step *model.Step) (*model.Output, error) {
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
		if l.moe != nil {
			if err := l.moe.Forward(ctx, b, ws, a, y); err != nil {
				return nil, err
			}
		} else if err := l.mlp.Forward(b, ws, y, a); err != nil {
			return nil, err
		}
		b.Add(x, x, y)
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

// Hidden runs the step and returns every row's final hidden state after
// each layer (for bisecting parity failures against layer_outputs). It
// commits the step like Forward.
func (m *Model) Hidden(ctx context.Context, batch *model.Batch) ([][]float32, error) {
	step, err := model.BeginStep(batch, m.opts.Vocab, m.opts.MaxPositions)
	if err != nil {
		return nil, err
	}
	b, ws, o := m.b, m.ws, m.opts
	n := step.Rows
	x, _ := ws.Get("x", n, o.Hidden)
	a, _ := ws.Get("a", n, o.Hidden)
	y, _ := ws.Get("y", n, o.Hidden)
	b.Embed(x, m.embed, step.Tokens)
	var outs [][]float32
	for i := range m.layers {
		l := &m.layers[i]
		b.RMSNorm(a, x, l.attnNorm, o.Eps, false)
		if err := l.attn.Forward(ctx, b, ws, step, a, y); err != nil {
			step.Abort()
			return nil, err
		}
		b.Add(x, x, y)
		b.RMSNorm(a, x, l.mlpNorm, o.Eps, false)
		if l.moe != nil {
			err = l.moe.Forward(ctx, b, ws, a, y)
		} else {
			err = l.mlp.Forward(b, ws, y, a)
		}
		if err != nil {
			step.Abort()
			return nil, err
		}
		b.Add(x, x, y)
		h := make([]float32, n*o.Hidden)
		if err := b.Read(h, x); err != nil {
			step.Abort()
			return nil, err
		}
		outs = append(outs, h)
	}
	step.Commit()
	return outs, nil
}
