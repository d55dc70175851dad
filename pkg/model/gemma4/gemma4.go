// Package gemma4 is the gemma4 architecture's text model (Gemma 4 MoE,
// google/gemma-4-26B-A4B), checked against transformers 5.17's
// modeling_gemma4.py:
//
//   - the config nests under text_config and the tensors under
//     model.language_model. (transformers), language_model.model. (mlx-lm)
//     or model. (the text-only Gemma4ForCausalLM); the vision and audio
//     towers are never read;
//   - embeddings are scaled by √hidden rounded to the table's type, as
//     transformers casts the scale to the weight dtype;
//   - every RMSNorm multiplies by its weight as stored (not Gemma 2/3's
//     1+w); values and the router input get an unweighted norm;
//   - attention: per-head q/k norm, scale 1, sliding-window layers
//     (rotary "default") and full layers (proportional RoPE, a global head
//     dim and KV heads, values from the key projection with
//     attention_k_eq_v); the last num_kv_shared_layers layers attend over
//     the keys and values of the last earlier layer of their kind and own
//     no cache;
//   - a dense GeGLU MLP runs beside the routed experts; the router reads
//     the residual stream (unweighted norm · scale / √hidden, softmax over
//     all experts, top-k, renormalized, times per_expert_scale) while the
//     experts read pre_feedforward_layernorm_2 of it; pre/post norms around
//     both, then post_feedforward_layernorm of their sum;
//   - per-layer inputs (hidden_size_per_layer_input > 0: the E2B/E4B
//     family's embed_tokens_per_layer, projection, gate and norms) add a
//     gated residual after the feed-forward;
//   - every layer's output is scaled by its layer_scalar;
//   - final norm, the tied head and final logit softcapping.
//
// The cache is kvcache.Rotating: sliding layers keep a window buffer,
// full layers every token.
package gemma4

import (
	"context"
	"fmt"
	"math"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/quant"
)

// ModelType is config.json's model_type for this package.
const ModelType = "gemma4"

// Model is a loaded gemma4 checkpoint.
type Model struct {
	b       kernels.Backend
	opts    Options
	weights *model.Weights
	store   moe.Store
	ws      *model.Workspace
	prefix  string

	embed      kernels.Weight
	embedScale float32
	layers     []layer
	norm       kernels.Tensor
	head       kernels.Weight
	ple        *perLayerInputs // nil without per-layer inputs

	// kv is the per-step record of the views that KV-shared layers read:
	// kv[j] is non-nil for the layers j that some later layer shares.
	kv views

	info model.Info
}

type layer struct {
	inputNorm, postAttnNorm              kernels.Tensor
	preFFNorm, postFFNorm                kernels.Tensor
	preFF2Norm, postFF1Norm, postFF2Norm kernels.Tensor
	attn                                 *attention
	mlp                                  *model.MLP
	moe                                  *moe.Block
	// routerScale is router.scale / √hidden: the router's input is the
	// unweighted RMSNorm of the residual times it.
	routerScale kernels.Tensor
	// scalar is layer_scalar, which multiplies the layer's output.
	scalar float32
	// Per-layer input gate, projection and norm (nil without them).
	pleGate, pleProj *model.Linear
	plePostNorm      kernels.Tensor
}

// LoadOptions tune loading.
type LoadOptions struct {
	// Store, when set, supplies the routed experts instead of the resident
	// store bound from the checkpoint (expert streaming plugs in here).
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

// prefixes are the known text-model prefixes and the untied head under
// each, probed in order.
var prefixes = []struct{ prefix, head string }{
	{"model.language_model.", "lm_head"},
	{"language_model.model.", "language_model.lm_head"},
	{"model.", "lm_head"},
}

func (m *Model) bind(ctx context.Context, lo LoadOptions) error {
	o := m.opts
	w := m.weights
	head := ""
	for _, p := range prefixes {
		if w.Has(p.prefix + "embed_tokens.weight") {
			m.prefix, head = p.prefix, p.head
			break
		}
	}
	if head == "" {
		return fault.Mark(fmt.Errorf("%s: %w: no embed_tokens.weight under model.language_model., language_model.model. or model.; not a gemma4 checkpoint mach knows",
			w.Dir, model.ErrWeight), fault.ErrIO)
	}
	var err error
	if m.embed, err = w.Linear(m.prefix+"embed_tokens", o.Vocab, o.Hidden); err != nil {
		return err
	}
	m.embedScale = castScale(math.Sqrt(float64(o.Hidden)), m.embed.Format())
	if m.norm, err = w.Vector(m.prefix+"norm.weight", o.Hidden, 0); err != nil {
		return err
	}
	if m.head, err = w.Head(head, o.Vocab, o.Hidden, m.embed, o.TiedEmbeddings); err != nil {
		return err
	}
	if o.PerLayerInput > 0 {
		if m.ple, err = m.bindPerLayerInputs(); err != nil {
			return err
		}
	}
	m.kv = make(views, o.Layers)
	resident := map[int][]*moe.Expert{}
	var activeBytes int64
	for i, spec := range o.Layer {
		if err := ctx.Err(); err != nil {
			return err
		}
		l, err := m.bindLayer(i, spec)
		if err != nil {
			return err
		}
		activeBytes += model.LinearBytes(l.attn.q, l.attn.o, l.mlp.Gate, l.mlp.Up, l.mlp.Down, l.moe.Router, l.pleGate, l.pleProj)
		if spec.SharesKV < 0 {
			activeBytes += model.LinearBytes(l.attn.k, l.attn.v)
		} else {
			m.kv[spec.SharesKV] = []kvcache.View{}
		}
		if lo.Store == nil {
			p := fmt.Sprintf("%slayers.%d.", m.prefix, i)
			es, err := moe.BindExperts(w, p, o.Experts, o.Hidden, o.Width)
			if err != nil {
				return err
			}
			resident[i] = es
			activeBytes += int64(o.TopK) * es[0].Bytes()
		}
		m.layers = append(m.layers, l)
	}
	blocks := make([]*moe.Block, len(m.layers))
	for i, l := range m.layers {
		blocks[i] = l.moe
	}
	if m.store, err = moe.UseStore(w.Dir, lo.Store, resident, blocks, func(int) int { return o.Experts }); err != nil {
		return err
	}
	// The head and one embedding row; per-layer inputs add one row of
	// their table and the model projection.
	activeBytes += model.WeightBytes(m.head) + model.WeightBytes(m.embed)/int64(o.Vocab)
	if m.ple != nil {
		activeBytes += model.WeightBytes(m.ple.embed)/int64(o.PerLayerVocab) + model.LinearBytes(m.ple.proj)
	}
	m.info = model.Info{
		ModelType: ModelType, Vocab: o.Vocab, Layers: o.Layers, Hidden: o.Hidden, MaxContext: o.MaxPositions,
		WeightBytes: w.BoundBytes(), ActiveBytes: activeBytes, Backend: m.b.Name(),
	}
	return nil
}

func (m *Model) bindLayer(i int, spec Layer) (layer, error) {
	o, w := m.opts, m.weights
	p := fmt.Sprintf("%slayers.%d.", m.prefix, i)
	var l layer
	var err error
	for _, v := range []struct {
		dst  *kernels.Tensor
		name string
	}{
		{&l.inputNorm, "input_layernorm"}, {&l.postAttnNorm, "post_attention_layernorm"},
		{&l.preFFNorm, "pre_feedforward_layernorm"}, {&l.postFFNorm, "post_feedforward_layernorm"},
		{&l.preFF2Norm, "pre_feedforward_layernorm_2"}, {&l.postFF1Norm, "post_feedforward_layernorm_1"},
		{&l.postFF2Norm, "post_feedforward_layernorm_2"},
	} {
		if *v.dst, err = w.Vector(p+v.name+".weight", o.Hidden, 0); err != nil {
			return l, err
		}
	}
	if l.scalar, err = m.hostScalar(p + "layer_scalar"); err != nil {
		return l, err
	}

	a := &attention{layer: i, spec: spec, eps: o.Eps}
	qd, kd := spec.Heads*spec.HeadDim, spec.KVHeads*spec.HeadDim
	if a.q, err = w.LoadLinear(p+"self_attn.q_proj", qd, o.Hidden); err != nil {
		return l, err
	}
	if a.o, err = w.LoadLinear(p+"self_attn.o_proj", o.Hidden, qd); err != nil {
		return l, err
	}
	if a.qNorm, err = w.Vector(p+"self_attn.q_norm.weight", spec.HeadDim, 0); err != nil {
		return l, err
	}
	// KV-shared layers' k/v projections and norms are never used
	// (transformers drops them on load), so they are not read.
	if spec.SharesKV < 0 {
		if a.k, err = w.LoadLinear(p+"self_attn.k_proj", kd, o.Hidden); err != nil {
			return l, err
		}
		if a.kNorm, err = w.Vector(p+"self_attn.k_norm.weight", spec.HeadDim, 0); err != nil {
			return l, err
		}
		if !spec.KEqV {
			if a.v, err = w.LoadLinear(p+"self_attn.v_proj", kd, o.Hidden); err != nil {
				return l, err
			}
		}
	}
	l.attn = a

	geglu := kernels.Activation{Kind: kernels.GeLUTanh}
	if l.mlp, err = w.LoadMLP(p+"mlp", o.Hidden, spec.Intermediate, geglu); err != nil {
		return l, err
	}
	router, err := w.LoadLinear(p+"router.proj", o.Experts, o.Hidden)
	if err != nil {
		return l, err
	}
	if l.routerScale, err = w.Vector(p+"router.scale", o.Hidden, 0); err != nil {
		return l, err
	}
	m.b.Scale(l.routerScale, l.routerScale, float32(math.Pow(float64(o.Hidden), -0.5)))
	pes, err := m.hostVector(p+"router.per_expert_scale", o.Experts)
	if err != nil {
		return l, err
	}
	l.moe = &moe.Block{Layer: i, Router: router, Act: geglu, ExpertScale: pes,
		Routing: kernels.Routing{K: o.TopK, Score: kernels.SoftmaxAll, Normalize: true}}

	if m.ple != nil {
		if l.pleGate, err = w.LoadLinear(p+"per_layer_input_gate", o.PerLayerInput, o.Hidden); err != nil {
			return l, err
		}
		if l.pleProj, err = w.LoadLinear(p+"per_layer_projection", o.Hidden, o.PerLayerInput); err != nil {
			return l, err
		}
		if l.plePostNorm, err = w.Vector(p+"post_per_layer_input_norm.weight", o.Hidden, 0); err != nil {
			return l, err
		}
	}
	return l, nil
}

// hostVector reads a small 1-D tensor to the host.
func (m *Model) hostVector(name string, n int) ([]float32, error) {
	t, err := m.weights.Vector(name, n, 0)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	if err := m.b.Read(out, t); err != nil {
		return nil, err
	}
	return out, nil
}

func (m *Model) hostScalar(name string) (float32, error) {
	v, err := m.hostVector(name, 1)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// castScale rounds an embedding scale to the table's element type, as
// transformers does (embed_scale.to(weight.dtype)); mlx-lm multiplies its
// bf16 embeddings by a weakly typed scalar, which rounds the same way.
// Quantized tables round to their scales' type.
func castScale(s float64, f quant.Format) float32 {
	v := float32(s)
	kind := f.Kind
	if f.Quantized() {
		switch f.Scale {
		case quant.ScaleBF16:
			kind = quant.BF16
		case quant.ScaleF16:
			kind = quant.F16
		}
	}
	switch kind {
	case quant.BF16:
		return quant.BF16ToF32(quant.F32ToBF16(v))
	case quant.F16:
		return quant.F16ToF32(quant.F32ToF16(v))
	}
	return v
}

// Info implements model.Model.
func (m *Model) Info() model.Info { return m.info }

// Options returns the decoded options.
func (m *Model) Options() Options { return m.opts }

// CacheSpec returns the rotating cache's shape for a capacity and storage
// type: one cache layer per layer that owns keys and values (KV-shared
// layers own none), sliding layers with their window. A window of at least
// the capacity never hides a key from a sequence that fits, so such layers
// are cached like full ones (the window buffer would only be larger).
func (m *Model) CacheSpec(capacity int, dt kernels.DType) kvcache.RotatingSpec {
	spec := kvcache.RotatingSpec{DType: dt, Capacity: capacity}
	for _, l := range m.opts.Layer {
		if l.Slot < 0 {
			continue
		}
		kv := l.KVHeads * l.HeadDim
		w := l.Window
		if w >= capacity {
			w = 0
		}
		spec.Layers = append(spec.Layers, kvcache.WindowLayer{KV: kvcache.LayerShape{K: kv, V: kv}, Window: w})
	}
	return spec
}

// NewCache implements model.Model.
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

// Hidden runs the step and returns every row's hidden state after each
// decoder layer (before the final norm, as the fixtures' layer_outputs),
// for bisecting a parity failure. It commits the step like Forward.
func (m *Model) Hidden(ctx context.Context, batch *model.Batch) ([][]float32, error) {
	step, err := model.BeginStep(batch, m.opts.Vocab, m.opts.MaxPositions)
	if err != nil {
		return nil, err
	}
	var outs [][]float32
	_, err = m.forward(ctx, step, func(x kernels.Tensor) error {
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

// forward runs the decoder layers over the step and returns the hidden
// states (before the final norm); after each layer it calls hook when set.
func (m *Model) forward(ctx context.Context, step *model.Step, hook func(x kernels.Tensor) error) (kernels.Tensor, error) {
	b, ws, o := m.b, m.ws, m.opts
	n := step.Rows
	var bufs [5]kernels.Tensor
	for i, name := range []string{"x", "a", "y", "e", "r"} {
		t, err := ws.Get(name, n, o.Hidden)
		if err != nil {
			return kernels.Tensor{}, err
		}
		bufs[i] = t
	}
	// x: the residual stream; a: a normed copy; y: the attention or
	// feed-forward output; e: the experts' output; r: the router input.
	x, a, y, e, r := bufs[0], bufs[1], bufs[2], bufs[3], bufs[4]
	b.Embed(x, m.embed, step.Tokens)
	b.Scale(x, x, m.embedScale)
	var ple kernels.Tensor
	if m.ple != nil {
		var err error
		if ple, err = m.ple.forward(b, ws, step, x); err != nil {
			return kernels.Tensor{}, err
		}
	}
	for j := range m.kv {
		if m.kv[j] != nil {
			m.kv[j] = resizeViews(m.kv[j], len(step.Batch.Seqs))
		}
	}
	for i := range m.layers {
		if err := ctx.Err(); err != nil {
			return kernels.Tensor{}, err
		}
		l := &m.layers[i]
		b.RMSNorm(a, x, l.inputNorm, o.Eps, false)
		if err := l.attn.forward(ctx, b, ws, step, m.kv, a, y); err != nil {
			return kernels.Tensor{}, err
		}
		b.RMSNorm(y, y, l.postAttnNorm, o.Eps, false)
		b.Add(x, x, y)

		// The dense MLP and the routed experts, side by side.
		b.RMSNorm(a, x, l.preFFNorm, o.Eps, false)
		if err := l.mlp.Forward(b, ws, y, a); err != nil {
			return kernels.Tensor{}, err
		}
		b.RMSNorm(y, y, l.postFF1Norm, o.Eps, false)
		b.RMSNorm(r, x, l.routerScale, o.Eps, false)
		b.RMSNorm(a, x, l.preFF2Norm, o.Eps, false)
		if err := l.moe.ForwardRouted(ctx, b, ws, r, a, e); err != nil {
			return kernels.Tensor{}, err
		}
		b.RMSNorm(e, e, l.postFF2Norm, o.Eps, false)
		b.Add(y, y, e)
		b.RMSNorm(y, y, l.postFFNorm, o.Eps, false)
		b.Add(x, x, y)

		if m.ple != nil {
			if err := m.ple.addGated(b, ws, l, i, ple, x, y); err != nil {
				return kernels.Tensor{}, err
			}
		}
		if l.scalar != 1 {
			b.Scale(x, x, l.scalar)
		}
		if hook != nil {
			if err := hook(x); err != nil {
				return kernels.Tensor{}, err
			}
		}
	}
	if err := b.Sync(); err != nil {
		return kernels.Tensor{}, err
	}
	return x, nil
}

func resizeViews(v []kvcache.View, n int) []kvcache.View {
	if cap(v) < n {
		return make([]kvcache.View, n)
	}
	v = v[:n]
	clear(v)
	return v
}

// logits runs the final norm, the head and the softcap on the rows that
// need logits.
func (m *Model) logits(step *model.Step, x kernels.Tensor) (*model.Output, error) {
	return model.FinalHead{Norm: m.norm, Eps: m.opts.Eps, W: m.head, Softcap: m.opts.Softcap}.Logits(m.b, m.ws, step, x)
}
