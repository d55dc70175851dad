// Package qwen35moe is the qwen3_5_moe architecture (Qwen3.5-35B-A3B,
// Qwen3.6-35B-A3B, Qwen3.5-122B-A10B): a hybrid of Gated DeltaNet
// linear-attention layers (three in four) and gated full-attention layers
// (per-head sigmoid output gate, (1+w) q/k norms, partial RoPE), every layer
// followed by a routed MoE with a shared expert behind a sigmoid gate.
//
// Checkpoints come wrapped (Qwen3_5MoeForConditionalGeneration: text
// config under text_config, tensors under model.language_model., a vision
// tower that is never read), text-only (model.) or converted by mlx-lm
// (language_model.model., stacked switch_mlp experts, conv1d moved to
// [C, K, 1], the (1+w) norms stored shifted, no MTP head). DetectLayout
// tells them apart. The MTP head (mtp.*) is bound when present and kept for
// speculative decoding.
//
// The cache is kvcache.Hybrid: keys and values for the full-attention
// layers, convolution and recurrent state for the linear ones, with
// snapshots for rollback. Prefill steps run the chunked delta rule, decode
// steps the recurrence.
package qwen35moe

import (
	"context"
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/attention"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/moe"
)

// ModelType is config.json's model_type for this package.
const ModelType = "qwen3_5_moe"

// Model is a loaded qwen3_5_moe checkpoint.
type Model struct {
	b       kernels.Backend
	opts    Options
	layout  Layout
	weights *model.Weights
	store   moe.Store
	ws      *model.Workspace

	embed  kernels.Weight
	layers []layer
	norm   kernels.Tensor
	head   kernels.Weight
	mtp    *MTP

	info model.Info
}

// layer is one decoder layer: a Gated DeltaNet or a gated attention block,
// then the routed experts and the shared expert.
type layer struct {
	attnNorm, mlpNorm kernels.Tensor
	attn              *attention.Block // full-attention layers
	gdn               *DeltaNet        // linear-attention layers
	moe               *moe.Block
	shared            *moe.Shared
}

// MTP is the checkpoint's multi-token-prediction head (mtp.*), kept for
// speculative decoding; it shares embed_tokens and lm_head with the model.
// A draft step for (hidden state h_t of the final norm, token x_{t+1}) is
// Layers(FC·[norm_e(embed(x_{t+1})) ‖ norm_h(h_t)]) → Norm → lm_head. This
// build binds the weights; the forward pass belongs to the speculative
// decoder.
type MTP struct {
	// PreFCNormEmbedding and PreFCNormHidden are 1×hidden plain weights
	// (the (1+w) shift applied).
	PreFCNormEmbedding, PreFCNormHidden kernels.Tensor
	// FC maps the concatenation (embedding first) back to hidden.
	FC *model.Linear
	// Layers are full-attention decoder layers with their own cache layers
	// 0 … len-1 and their own expert store (layer i's experts at i).
	Layers []MTPLayer
	Norm   kernels.Tensor
	Store  moe.Store
}

// MTPLayer is one decoder layer of the MTP head.
type MTPLayer struct {
	AttnNorm, MLPNorm kernels.Tensor
	Attn              *attention.Block
	MoE               *moe.Block
	Shared            *moe.Shared
}

// LoadOptions tune loading.
type LoadOptions struct {
	// Store, when set, supplies the routed experts of the decoder layers
	// instead of the resident store bound from the checkpoint.
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

// norm binds a (1+w) norm weight as a plain one.
func (m *Model) normWeight(name string, n int) (kernels.Tensor, error) {
	add := float32(1)
	if m.layout.ShiftedNorms {
		add = 0
	}
	return m.weights.Vector(name, n, add)
}

func (m *Model) bind(ctx context.Context, lo LoadOptions) error {
	o := m.opts
	w := m.weights
	var err error
	if m.layout, err = DetectLayout(w, o); err != nil {
		return err
	}
	p := m.layout.Prefix
	if m.embed, err = w.Linear(p+"embed_tokens", o.Vocab, o.Hidden); err != nil {
		return err
	}
	if m.norm, err = m.normWeight(p+"norm.weight", o.Hidden); err != nil {
		return err
	}
	switch {
	case w.Has(m.layout.Head + ".weight"):
		if m.head, err = w.Linear(m.layout.Head, o.Vocab, o.Hidden); err != nil {
			return err
		}
	case o.TiedEmbeddings:
		m.head = m.embed
	default:
		return fault.Mark(fmt.Errorf("%s: no %s.weight and tie_word_embeddings is false in config.json", w.Dir, m.layout.Head), fault.ErrIO)
	}
	resident := map[int][]*moe.Expert{}
	var activeBytes, copied int64
	for i := 0; i < o.Layers; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		lp := fmt.Sprintf("%slayers.%d.", p, i)
		l, active, c, err := m.bindLayer(lp, i, i, o.Linear[i], o.Experts[i], lo.Store == nil, resident)
		if err != nil {
			return err
		}
		activeBytes += active
		copied += c
		m.layers = append(m.layers, l)
	}
	blocks := make([]*moe.Block, len(m.layers))
	for i, l := range m.layers {
		blocks[i] = l.moe
	}
	if m.store, err = moe.UseStore(w.Dir, lo.Store, resident, blocks, func(i int) int { return o.Experts[i] }); err != nil {
		return err
	}
	if err := m.bindMTP(ctx); err != nil {
		return err
	}
	activeBytes += model.WeightBytes(m.head) + model.WeightBytes(m.embed)/int64(o.Vocab) // the head, and one embedding row
	m.info = model.Info{
		ModelType: ModelType, Vocab: o.Vocab, Layers: o.Layers, Hidden: o.Hidden, MaxContext: o.MaxPositions,
		WeightBytes: w.BoundBytes() + copied, ActiveBytes: activeBytes, Backend: m.b.Name(),
	}
	return nil
}

// bindLayer binds the decoder layer under lp (ending in "."): its norms,
// its token mixer (Gated DeltaNet when linear, else gated attention on
// cache layer cacheLayer), its router and shared expert, and — when
// resident — its routed experts into resident[idx]. It returns the bytes
// one token reads and the bytes copied off the mapping.
func (m *Model) bindLayer(lp string, idx, cacheLayer int, linear bool, experts int, bindExperts bool, resident map[int][]*moe.Expert) (layer, int64, int64, error) {
	o, w := m.opts, m.weights
	var l layer
	var err error
	var active, copied int64
	if l.attnNorm, err = m.normWeight(lp+"input_layernorm.weight", o.Hidden); err != nil {
		return l, 0, 0, err
	}
	if l.mlpNorm, err = m.normWeight(lp+"post_attention_layernorm.weight", o.Hidden); err != nil {
		return l, 0, 0, err
	}
	if linear {
		if l.gdn, copied, err = loadDeltaNet(w, m.b, lp+"linear_attn.", cacheLayer, o); err != nil {
			return l, 0, 0, err
		}
		g := l.gdn
		active += model.LinearBytes(g.QKV, g.Z, g.B, g.A, g.Out) + copied
	} else {
		a := &attention.Block{Layer: cacheLayer, Heads: o.Heads, KVHeads: o.KVHeads, HeadDim: o.HeadDim, NormEps: o.Eps,
			RoPE: o.RoPE, OutputGate: true}
		if err := a.LoadProjections(w, lp+"self_attn.", o.Hidden); err != nil {
			return l, 0, 0, err
		}
		if a.QNorm, err = m.normWeight(lp+"self_attn.q_norm.weight", o.HeadDim); err != nil {
			return l, 0, 0, err
		}
		if a.KNorm, err = m.normWeight(lp+"self_attn.k_norm.weight", o.HeadDim); err != nil {
			return l, 0, 0, err
		}
		l.attn = a
		active += model.LinearBytes(a.Q, a.K, a.V, a.O)
	}
	router, err := w.LoadLinear(lp+"mlp.gate", experts, o.Hidden)
	if err != nil {
		return l, 0, 0, err
	}
	l.moe = &moe.Block{Layer: idx, Router: router, Act: kernels.Activation{Kind: kernels.SiLU},
		Routing: kernels.Routing{K: o.TopK, Score: kernels.SoftmaxAll, Normalize: true}}
	if l.shared, err = moe.LoadShared(w, lp+"mlp.shared_expert", lp+"mlp.shared_expert_gate", o.Hidden, o.SharedWidth,
		kernels.Activation{Kind: kernels.SiLU}); err != nil {
		return l, 0, 0, err
	}
	active += model.LinearBytes(router) + l.shared.Bytes()
	if bindExperts {
		es, err := moe.BindExperts(w, lp+"mlp.", experts, o.Hidden, o.ExpertWidth)
		if err != nil {
			return l, 0, 0, err
		}
		resident[idx] = es
		active += int64(o.TopK) * es[0].Bytes()
	}
	return l, active, copied, nil
}

// bindMTP binds the MTP head when the checkpoint has one. A partial head
// is an error: half of it cannot be used.
func (m *Model) bindMTP(ctx context.Context) error {
	o, w := m.opts, m.weights
	if !w.Has("mtp.fc.weight") {
		return nil
	}
	n := o.MTPLayers
	if n <= 0 {
		n = 1 // transformers' default mtp_num_hidden_layers
	}
	h := &MTP{}
	var err error
	if h.PreFCNormEmbedding, err = m.normWeight("mtp.pre_fc_norm_embedding.weight", o.Hidden); err != nil {
		return err
	}
	if h.PreFCNormHidden, err = m.normWeight("mtp.pre_fc_norm_hidden.weight", o.Hidden); err != nil {
		return err
	}
	if h.FC, err = w.LoadLinear("mtp.fc", o.Hidden, 2*o.Hidden); err != nil {
		return err
	}
	if h.Norm, err = m.normWeight("mtp.norm.weight", o.Hidden); err != nil {
		return err
	}
	resident := map[int][]*moe.Expert{}
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		l, _, _, err := m.bindLayer(fmt.Sprintf("mtp.layers.%d.", i), i, i, false, o.NumExperts, true, resident)
		if err != nil {
			return fmt.Errorf("MTP head: %w", err)
		}
		h.Layers = append(h.Layers, MTPLayer{AttnNorm: l.attnNorm, MLPNorm: l.mlpNorm, Attn: l.attn, MoE: l.moe, Shared: l.shared})
	}
	h.Store = moe.NewResident(resident)
	for _, l := range h.Layers {
		l.MoE.Store = h.Store
	}
	m.mtp = h
	return nil
}

// Info implements model.Model.
func (m *Model) Info() model.Info { return m.info }

// Options returns the decoded options.
func (m *Model) Options() Options { return m.opts }

// Layout returns how the checkpoint was recognized.
func (m *Model) Layout() Layout { return m.layout }

// SetChunk sets the chunk length of the chunked delta rule that steps of
// more than one token use (0: the token-by-token recurrence everywhere).
func (m *Model) SetChunk(n int) {
	for _, l := range m.layers {
		if l.gdn != nil {
			l.gdn.Chunk = max(n, 0)
		}
	}
}

// MTP returns the checkpoint's MTP head, or nil when it has none.
func (m *Model) MTP() *MTP { return m.mtp }

// CacheSpec returns the hybrid cache shape for a capacity and key/value
// storage type.
func (m *Model) CacheSpec(capacity int, dt kernels.DType) kvcache.HybridSpec {
	o := m.opts
	spec := kvcache.HybridSpec{Layers: make([]kvcache.HybridLayer, o.Layers), DType: dt, Capacity: capacity}
	for i, l := range m.layers {
		if l.gdn != nil {
			s := l.gdn.LinearShape()
			spec.Layers[i].Linear = &s
		} else {
			spec.Layers[i].KV = kvcache.LayerShape{K: o.KVHeads * o.HeadDim, V: o.KVHeads * o.HeadDim}
		}
	}
	return spec
}

// NewCache implements model.Model: a kvcache.Hybrid.
func (m *Model) NewCache(capacity int, dt kernels.DType) (kvcache.Cache, error) {
	if capacity <= 0 || capacity > m.opts.MaxPositions {
		capacity = m.opts.MaxPositions
	}
	return kvcache.NewHybrid(m.b, m.CacheSpec(capacity, dt))
}

// Close implements model.Model.
func (m *Model) Close() error {
	err := m.store.Close()
	if m.mtp != nil {
		if e := m.mtp.Store.Close(); err == nil {
			err = e
		}
	}
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
	x, err := m.forward(ctx, step, nil)
	var out *model.Output
	if err == nil {
		out, err = m.logits(step, x)
	}
	if err := step.End(m.b, err); err != nil {
		return nil, err
	}
	return out, nil
}

// forward runs the decoder layers and returns the hidden states (before
// the final norm); each, when set, sees every layer's output.
func (m *Model) forward(ctx context.Context, step *model.Step, each func(i int, x kernels.Tensor) error) (kernels.Tensor, error) {
	b, ws, o := m.b, m.ws, m.opts
	n := step.Rows
	x, err := ws.Get("x", n, o.Hidden)
	if err != nil {
		return x, err
	}
	a, err := ws.Get("a", n, o.Hidden)
	if err != nil {
		return x, err
	}
	y, err := ws.Get("y", n, o.Hidden)
	if err != nil {
		return x, err
	}
	b.Embed(x, m.embed, step.Tokens)
	for i := range m.layers {
		if err := ctx.Err(); err != nil {
			return x, err
		}
		l := &m.layers[i]
		b.RMSNorm(a, x, l.attnNorm, o.Eps, false)
		if l.gdn != nil {
			err = l.gdn.Forward(ctx, b, ws, step, a, y)
		} else {
			err = l.attn.Forward(ctx, b, ws, step, a, y)
		}
		if err != nil {
			return x, err
		}
		b.Add(x, x, y)
		b.RMSNorm(a, x, l.mlpNorm, o.Eps, false)
		if err := l.moe.Forward(ctx, b, ws, a, y); err != nil {
			return x, err
		}
		if err := l.shared.AddTo(b, ws, a, y); err != nil {
			return x, err
		}
		b.Add(x, x, y)
		if each != nil {
			if err := each(i, x); err != nil {
				return x, err
			}
		}
	}
	return x, b.Sync()
}

// logits runs the final norm and the head on the rows that need logits.
func (m *Model) logits(step *model.Step, x kernels.Tensor) (*model.Output, error) {
	b, ws, o := m.b, m.ws, m.opts
	r := len(step.LogitRows)
	if r == 0 {
		return step.SplitLogits(nil, o.Vocab), nil
	}
	sel, err := ws.Get("final.x", r, o.Hidden)
	if err != nil {
		return nil, err
	}
	b.Gather(sel, x, step.LogitRows)
	b.RMSNorm(sel, sel, m.norm, o.Eps, false)
	lg, err := ws.Get("final.logits", r, o.Vocab)
	if err != nil {
		return nil, err
	}
	b.MatMul(lg, sel, m.head)
	host := make([]float32, r*o.Vocab)
	if err := b.Read(host, lg); err != nil {
		return nil, err
	}
	return step.SplitLogits(host, o.Vocab), nil
}

// Hidden runs the step and returns every row's hidden state after each
// layer (for bisecting parity failures against layer_outputs). It commits
// the step like Forward.
func (m *Model) Hidden(ctx context.Context, batch *model.Batch) ([][]float32, error) {
	step, err := model.BeginStep(batch, m.opts.Vocab, m.opts.MaxPositions)
	if err != nil {
		return nil, err
	}
	var outs [][]float32
	_, err = m.forward(ctx, step, func(_ int, x kernels.Tensor) error {
		h := make([]float32, x.Elems())
		if err := m.b.Read(h, x); err != nil {
			return err
		}
		outs = append(outs, h)
		return nil
	})
	if err := step.End(m.b, err); err != nil {
		return nil, err
	}
	return outs, nil
}
