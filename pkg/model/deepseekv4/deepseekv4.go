// Package deepseekv4 is the deepseek_v4 architecture (DeepSeek-V4-Flash,
// V4-Pro and their -Base checkpoints), checked against transformers 5.17's
// modeling_deepseek_v4.py and DeepSeek's reference inference/model.py:
//
//   - manifold-constrained hyper-connections: hc_mult residual streams per
//     token, collapsed before each sublayer with sigmoid weights and
//     recombined after it with a Sinkhorn-normalized mixing matrix
//     (contracted over its first index), and a final HyperHead;
//   - attention with a low-rank normed query (wq_a, q_norm, wq_b, a
//     per-head unweighted RMSNorm) over ONE shared K=V head, partial
//     interleaved RoPE on each head's trailing dims (the "main" rotary on
//     sliding layers, "compress" — compress_rope_theta with YaRN, attention
//     factor 1 — on compressed ones), the inverse rotation on the output,
//     per-head sinks, and a grouped low-rank output projection (wo_a per
//     group, then wo_b);
//   - every layer sees a sliding window; heavily compressed layers (HCA)
//     also every closed entry of a compressor that softmax-pools each
//     window of ratio tokens (gate + ape per channel) into one RMS-normed,
//     rotated K=V row, and compressed sparse layers (CSA, ratio 4) the
//     top index_topk entries of overlapping two-window pools chosen per
//     query by the lightning indexer (its own compressor, queries from the
//     low-rank query, ReLU scores weighted per head);
//   - MoE on every layer: sqrt(softplus) router scores, the selection bias
//     added for choosing only, top-k renormalized and scaled by
//     routed_scaling_factor, or in hash layers the experts tid2eid lists
//     for the input token; clamped SwiGLU experts (routed and shared).
//
// Layer schedules come from config.json (either transformers' or
// DeepSeek's spelling). Weights load from transformers' save_pretrained
// form (DeepSeek's names under model.), DeepSeek's hub form (FP8 e4m3 with
// 128×128 block scales, FP4 e2m1 experts with an e8m0 scale per 32 —
// computed on as stored) and mach-prune's per-expert output; experts
// stacked on one axis must be sliced with mach-prune first. The cache is a
// kvcache.Compressed. The MTP layer (mtp.*) is not bound.
package deepseekv4

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// ModelType is config.json's model_type for this package.
const ModelType = "deepseek_v4"

// Model is a loaded deepseek_v4 checkpoint.
type Model struct {
	b       kernels.Backend
	opts    Options
	weights *model.Weights
	// raw maps the shards again for what model.Weights does not decode:
	// DeepSeek's FP8/FP4 weight+scale pairs and the integer hash tables.
	raw   *safetensors.Set
	store moe.Store
	ws    *model.Workspace
	names names

	embed  kernels.Weight
	layers []layer
	norm   kernels.Tensor
	head   kernels.Weight
	hcHead hcSite

	info model.Info
}

type layer struct {
	attnNorm, ffnNorm kernels.Tensor
	attnHC, ffnHC     hcSite
	attn              *attention
	ffn               *ffn
}

// hcSite is one hyper-connection site: fn maps the normed streams to the
// mixing logits, base and scale shape them (host copies).
type hcSite struct {
	fn    kernels.Weight
	base  []float32
	scale []float32
}

type attention struct {
	layer int
	kind  Kind
	ratio int
	rope  kernels.RoPE
	wqA   kernels.Weight
	qNorm kernels.Tensor
	wqB   kernels.Weight
	wkv   kernels.Weight
	kvNrm kernels.Tensor
	woA   []kernels.Weight // one per group
	woB   kernels.Weight
	sinks kernels.Tensor
	comp  *compressor // compressed layers
	idx   *indexer    // CSA layers
}

// compressor pools windows of ratio tokens into entries of width d; coff 2
// (overlap) pools the previous window's first-series channels too.
type compressor struct {
	wkv, wgate kernels.Weight // [coff·d, hidden]
	ape        []float32      // [ratio, coff·d]
	norm       kernels.Tensor
	d, coff, m int
	rope       kernels.RoPE
}

type indexer struct {
	comp  *compressor
	wqB   kernels.Weight // [heads·dim, q_lora]
	wproj kernels.Weight // [heads, hidden]
	heads int
}

type ffn struct {
	router *model.Linear
	bias   kernels.Tensor // selection bias (e_score_correction_bias)
	hash   []int32        // tid2eid, K per token (hash layers)
	block  *moe.Block
	shared *model.MLP
}

// names is a checkpoint's naming: DeepSeek's hub names, or the same names
// under model. with transformers' embed/norm/hc_head spellings (its
// save_pretrained).
type names struct {
	upstream bool
}

func (n names) embed() string {
	if n.upstream {
		return "embed"
	}
	return "model.embed_tokens"
}

func (n names) norm() string {
	if n.upstream {
		return "norm.weight"
	}
	return "model.norm.weight"
}

func (n names) hcHead(part string) string {
	if n.upstream {
		return "hc_head_" + part
	}
	return "model.hc_head.hc_" + part
}

func (n names) layer(i int) string {
	if n.upstream {
		return fmt.Sprintf("layers.%d.", i)
	}
	return fmt.Sprintf("model.layers.%d.", i)
}

// LoadOptions tune loading.
type LoadOptions struct {
	// Store, when set, supplies the routed experts instead of the resident
	// store bound from the checkpoint.
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
		raw, err := safetensors.OpenSet(dir)
		if err != nil {
			return nil, fault.Mark(err, fault.ErrIO)
		}
		m := &Model{b: b, opts: opts, weights: w, raw: raw, ws: model.NewWorkspace(b)}
		if err := m.bind(ctx, lo); err != nil {
			_ = raw.Close()
			return nil, err
		}
		return m, nil
	})
}

// ErrStacked is wrapped by the refusal of routed experts stacked along one
// axis (DeepSeek's MLX conversions, transformers' fused tensors).
var ErrStacked = fmt.Errorf("routed experts stacked in one tensor per projection: slice it with mach-prune first (mach-prune --source DIR --output OUT --keep all writes the per-expert layout)")

func (m *Model) bind(ctx context.Context, lo LoadOptions) error {
	o := m.opts
	w := m.weights
	switch {
	case w.Has("embed.weight"):
		m.names = names{upstream: true}
	case w.Has("model.embed_tokens.weight"):
	default:
		return fault.Mark(fmt.Errorf("%s: %w: no embed.weight (DeepSeek's names) or model.embed_tokens.weight (transformers' save_pretrained)", w.Dir, model.ErrWeight), fault.ErrIO)
	}
	n := m.names
	var err error
	if m.embed, err = m.linear(n.embed(), o.Vocab, o.Hidden); err != nil {
		return err
	}
	if m.norm, err = w.Vector(n.norm(), o.Hidden, 0); err != nil {
		return err
	}
	headName := "head"
	if !w.Has("head.weight") && w.Has("lm_head.weight") {
		headName = "lm_head"
	}
	if m.head, err = m.linear(headName, o.Vocab, o.Hidden); err != nil {
		return err
	}
	if m.hcHead, err = m.hcSite(n.hcHead("fn"), n.hcHead("base"), n.hcHead("scale"), o.HCMult, 1); err != nil {
		return err
	}
	resident := map[int][]*moe.Expert{}
	var activeBytes, extra int64
	for i := 0; i < o.Layers; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := n.layer(i)
		var l layer
		if l.attnNorm, err = w.Vector(p+"attn_norm.weight", o.Hidden, 0); err != nil {
			return err
		}
		if l.ffnNorm, err = w.Vector(p+"ffn_norm.weight", o.Hidden, 0); err != nil {
			return err
		}
		mix := (2 + o.HCMult) * o.HCMult
		if l.attnHC, err = m.hcSite(p+"hc_attn_fn", p+"hc_attn_base", p+"hc_attn_scale", mix, 3); err != nil {
			return err
		}
		if l.ffnHC, err = m.hcSite(p+"hc_ffn_fn", p+"hc_ffn_base", p+"hc_ffn_scale", mix, 3); err != nil {
			return err
		}
		if l.attn, err = m.bindAttention(i, p+"attn."); err != nil {
			return err
		}
		if l.ffn, err = m.bindFFN(i, p+"ffn."); err != nil {
			return err
		}
		if lo.Store == nil {
			es, err := m.bindExperts(p+"ffn.", o.LayerExperts(i))
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
		blocks[i] = l.ffn.block
	}
	if m.store, err = moe.UseStore(w.Dir, lo.Store, resident, blocks, o.LayerExperts); err != nil {
		return err
	}
	// One token reads every non-expert weight except the embedding table
	// (one row of it), plus its top-k experts per layer.
	activeBytes += w.BoundBytes() - model.WeightBytes(m.embed) + model.WeightBytes(m.embed)/int64(o.Vocab)
	if lo.Store == nil {
		for _, es := range resident {
			for _, e := range es {
				activeBytes -= e.Bytes()
			}
		}
	}
	m.info = model.Info{
		ModelType: ModelType, Vocab: o.Vocab, Layers: o.Layers, Hidden: o.Hidden, MaxContext: o.MaxPositions,
		WeightBytes: w.BoundBytes() + extra, ActiveBytes: activeBytes, Backend: m.b.Name(),
	}
	return nil
}

func (m *Model) bindAttention(i int, p string) (*attention, error) {
	o := m.opts
	w := m.weights
	a := &attention{layer: i, kind: o.Kinds[i], ratio: o.Ratios[i], rope: o.RoPE(i)}
	var err error
	if a.wqA, err = m.linear(p+"wq_a", o.QLora, o.Hidden); err != nil {
		return nil, err
	}
	if a.qNorm, err = w.Vector(p+"q_norm.weight", o.QLora, 0); err != nil {
		return nil, err
	}
	if a.wqB, err = m.linear(p+"wq_b", o.Heads*o.HeadDim, o.QLora); err != nil {
		return nil, err
	}
	if a.wkv, err = m.linear(p+"wkv", o.HeadDim, o.Hidden); err != nil {
		return nil, err
	}
	// DeepSeek names the K=V norm kv_norm; transformers 5.17 saves it as norm.
	kvNorm := p + "kv_norm.weight"
	if !w.Has(kvNorm) && w.Has(p+"norm.weight") {
		kvNorm = p + "norm.weight"
	}
	if a.kvNrm, err = w.Vector(kvNorm, o.HeadDim, 0); err != nil {
		return nil, err
	}
	per := o.Heads * o.HeadDim / o.OGroups
	if w.Has(p + "wo_a.0.weight") {
		// MLX conversions split wo_a per group.
		for g := 0; g < o.OGroups; g++ {
			wg, err := m.linear(fmt.Sprintf("%swo_a.%d", p, g), o.OLora, per)
			if err != nil {
				return nil, err
			}
			a.woA = append(a.woA, wg)
		}
	} else {
		t, err := m.matrix(p+"wo_a", o.OGroups*o.OLora, per)
		if err != nil {
			return nil, err
		}
		for g := 0; g < o.OGroups; g++ {
			wg, err := w.Bind(t.Name, t.M.RowRange(g*o.OLora, (g+1)*o.OLora))
			if err != nil {
				return nil, err
			}
			a.woA = append(a.woA, wg)
		}
	}
	if a.woB, err = m.linear(p+"wo_b", o.Hidden, o.OGroups*o.OLora); err != nil {
		return nil, err
	}
	if a.sinks, err = w.Vector(p+"attn_sink", o.Heads, 0); err != nil {
		return nil, err
	}
	if a.kind == Sliding {
		return a, nil
	}
	coff := 1
	if a.kind == CSA {
		coff = 2
	}
	if a.comp, err = m.bindCompressor(p+"compressor.", o.HeadDim, coff, a.ratio, o.CompressRoPE); err != nil {
		return nil, err
	}
	if a.kind == CSA {
		x := &indexer{heads: o.IndexHeads}
		if x.comp, err = m.bindCompressor(p+"indexer.compressor.", o.IndexDim, 2, a.ratio, o.IndexRoPE); err != nil {
			return nil, err
		}
		if x.wqB, err = m.linear(p+"indexer.wq_b", o.IndexHeads*o.IndexDim, o.QLora); err != nil {
			return nil, err
		}
		if x.wproj, err = m.linear(p+"indexer.weights_proj", o.IndexHeads, o.Hidden); err != nil {
			return nil, err
		}
		a.idx = x
	}
	return a, nil
}

func (m *Model) bindCompressor(p string, d, coff, ratio int, r kernels.RoPE) (*compressor, error) {
	o := m.opts
	c := &compressor{d: d, coff: coff, m: ratio, rope: r}
	var err error
	if c.wkv, err = m.linear(p+"wkv", coff*d, o.Hidden); err != nil {
		return nil, err
	}
	if c.wgate, err = m.linear(p+"wgate", coff*d, o.Hidden); err != nil {
		return nil, err
	}
	if c.ape, err = m.hostFloats(p+"ape", ratio, coff*d); err != nil {
		return nil, err
	}
	if c.norm, err = m.weights.Vector(p+"norm.weight", d, 0); err != nil {
		return nil, err
	}
	return c, nil
}

func (m *Model) bindFFN(i int, p string) (*ffn, error) {
	o := m.opts
	w := m.weights
	f := &ffn{}
	ne := o.LayerExperts(i)
	rw, err := m.linear(p+"gate", ne, o.Hidden)
	if err != nil {
		return nil, err
	}
	f.router = &model.Linear{W: rw}
	routing := kernels.Routing{K: o.TopK, Score: o.Score, Normalize: true, Scale: o.RouteScale}
	if o.Hash[i] {
		if f.hash, err = m.hashTable(p+"gate.tid2eid", ne); err != nil {
			return nil, err
		}
	} else {
		if f.bias, err = w.Vector(p+"gate.bias", ne, 0); err != nil {
			return nil, err
		}
		routing.Bias = f.bias
	}
	f.block = &moe.Block{Layer: i, Router: f.router, Routing: routing, Act: o.Act}
	sh := &model.MLP{Act: o.Act, Name: "shared"}
	for _, x := range []struct {
		dst     **model.Linear
		name    string
		out, in int
	}{{&sh.Gate, "w1", o.ExpertWidth, o.Hidden}, {&sh.Up, "w3", o.ExpertWidth, o.Hidden}, {&sh.Down, "w2", o.Hidden, o.ExpertWidth}} {
		wt, err := m.linear(p+"shared_experts."+x.name, x.out, x.in)
		if err != nil {
			return nil, err
		}
		*x.dst = &model.Linear{W: wt}
	}
	f.shared = sh
	return f, nil
}

// bindExperts binds layer's routed experts, one tensor per expert and
// projection (DeepSeek's hub layout and mach-prune's output).
func (m *Model) bindExperts(p string, n int) ([]*moe.Expert, error) {
	o := m.opts
	w := m.weights
	for _, stacked := range []string{p + "experts.w1.weight", p + "experts.w1", p + "switch_mlp.gate_proj.weight", "model." + strings.TrimPrefix(strings.Replace(p, ".ffn.", ".mlp.", 1), "model.") + "experts.gate_up_proj"} {
		if w.Has(stacked) {
			return nil, fault.Mark(fmt.Errorf("%s: tensor %q: %w", w.Dir, stacked, ErrStacked), fault.ErrUnsupported)
		}
	}
	out := make([]*moe.Expert, n)
	for e := range out {
		q := fmt.Sprintf("%sexperts.%d.", p, e)
		x := &moe.Expert{}
		var err error
		if x.Gate, err = m.linear(q+"w1", o.ExpertWidth, o.Hidden); err != nil {
			return nil, err
		}
		if x.Up, err = m.linear(q+"w3", o.ExpertWidth, o.Hidden); err != nil {
			return nil, err
		}
		if x.Down, err = m.linear(q+"w2", o.Hidden, o.ExpertWidth); err != nil {
			return nil, err
		}
		out[e] = x
	}
	return out, nil
}

func (m *Model) hcSite(fn, base, scale string, rows, scales int) (hcSite, error) {
	o := m.opts
	var s hcSite
	var err error
	if s.fn, err = m.linear(strings.TrimSuffix(fn, ".weight"), rows, o.HCMult*o.Hidden); err != nil {
		return s, err
	}
	if s.base, err = m.hostFloats(base, rows); err != nil {
		return s, err
	}
	if s.scale, err = m.hostFloats(scale, scales); err != nil {
		return s, err
	}
	return s, nil
}

// tensor returns a tensor's bytes and header from the shards.
func (m *Model) tensor(name string) ([]byte, safetensors.TensorInfo, error) {
	b, info, err := m.raw.Bytes(name)
	if err != nil {
		return nil, info, fault.Mark(fmt.Errorf("%s: %w: tensor %q: %v", m.weights.Dir, model.ErrWeight, name, err), fault.ErrIO)
	}
	return b, info, nil
}

func (m *Model) errf(name, format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%s: tensor %q: %w: %s", m.weights.Dir, name, model.ErrWeight, fmt.Sprintf(format, args...)), fault.ErrUnsupported)
}

// hostFloats reads an f32/bf16/f16 tensor of the given shape to the host.
func (m *Model) hostFloats(name string, shape ...int) ([]float32, error) {
	data, info, err := m.tensor(name)
	if err != nil {
		return nil, err
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if int(info.NumElements()) != n || !sameDims(info.Shape, shape) {
		return nil, m.errf(name, "shape %v, want %v from config.json", info.Shape, shape)
	}
	var k quant.Kind
	switch info.DType {
	case safetensors.F32:
		k = quant.F32
	case safetensors.BF16:
		k = quant.BF16
	case safetensors.F16:
		k = quant.F16
	default:
		return nil, m.errf(name, "dtype %s, want f32, bf16 or f16", info.DType)
	}
	return (&quant.Matrix{Format: quant.Format{Kind: k}, Rows: 1, Cols: n, Data: data}).Dequantize(), nil
}

func sameDims(a []int64, b []int) bool {
	// A single dimension may also be stored as [n] for [1, n] and back.
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if int(a[i]) != b[i] {
			return false
		}
	}
	return true
}

// hashTable reads a hash layer's tid2eid [vocab, K] (I64 or I32) and
// checks every id against the layer's experts.
func (m *Model) hashTable(name string, experts int) ([]int32, error) {
	o := m.opts
	data, info, err := m.tensor(name)
	if err != nil {
		return nil, err
	}
	if len(info.Shape) != 2 || int(info.Shape[0]) != o.Vocab || int(info.Shape[1]) != o.TopK {
		return nil, m.errf(name, "shape %v, want [%d, %d] (vocab_size, num_experts_per_tok)", info.Shape, o.Vocab, o.TopK)
	}
	out := make([]int32, o.Vocab*o.TopK)
	for i := range out {
		var v int64
		switch info.DType {
		case safetensors.I64:
			v = int64(binary.LittleEndian.Uint64(data[8*i:]))
		case safetensors.I32:
			v = int64(int32(binary.LittleEndian.Uint32(data[4*i:])))
		default:
			return nil, m.errf(name, "dtype %s, want I64 or I32 expert ids", info.DType)
		}
		if v < 0 || v >= int64(experts) {
			return nil, m.errf(name, "token %d routes to expert %d of %d", i/o.TopK, v, experts)
		}
		out[i] = int32(v)
	}
	return out, nil
}

// linear binds the weight base ([out, in]).
func (m *Model) linear(base string, out, in int) (kernels.Weight, error) {
	t, err := m.matrix(base, out, in)
	if err != nil {
		return nil, err
	}
	return m.weights.Bind(t.Name, t.M)
}

// matrix decodes the weight base ([out, in]) through model.Weights, which
// reads DeepSeek's FP8 (F8_E4M3 + .scale tile scales) and FP4 (I8 e2m1
// pairs + .scale e8m0 per 32) as stored, and f32/bf16/f16/MLX forms.
func (m *Model) matrix(base string, out, in int) (model.Tensor, error) {
	t, err := m.weights.Matrix(base)
	if err != nil {
		return t, err
	}
	if len(t.Shape) != 2 || t.M.Rows != out || t.M.Cols != in {
		return t, m.errf(t.Name, "shape %v, want [%d, %d] from config.json", t.Shape, out, in)
	}
	return t, nil
}

// Info implements model.Model.
func (m *Model) Info() model.Info { return m.info }

// Options returns the decoded options.
func (m *Model) Options() Options { return m.opts }

// CacheSpec returns the compressed cache's shape for a capacity and
// storage type.
func (m *Model) CacheSpec(capacity int, dt kernels.DType) kvcache.CompressedSpec {
	return kvcache.CompressedSpec{Layers: m.opts.CacheLayers(), DType: dt, Capacity: capacity}
}

// NewCache implements model.Model: a compressed cache.
func (m *Model) NewCache(capacity int, dt kernels.DType) (kvcache.Cache, error) {
	if capacity <= 0 || capacity > m.opts.MaxPositions {
		capacity = m.opts.MaxPositions
	}
	return kvcache.NewCompressed(m.b, m.CacheSpec(capacity, dt))
}

// Close implements model.Model.
func (m *Model) Close() error {
	err := m.store.Close()
	if e := m.raw.Close(); err == nil {
		err = e
	}
	if e := m.weights.Close(); err == nil {
		err = e
	}
	return err
}
