package archconfig

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// DeepSeekV4Kind is a deepseek_v4 layer's attention kind.
type DeepSeekV4Kind uint8

// The attention kinds (transformers' layer_types; DeepSeek's
// compress_ratios 0, 4 and 128).
const (
	// DeepSeekV4Sliding: the sliding window only.
	DeepSeekV4Sliding DeepSeekV4Kind = iota + 1
	// DeepSeekV4CSA: compressed sparse attention — overlapping compressed entries
	// (two series per token) chosen per query by the lightning indexer.
	DeepSeekV4CSA
	// DeepSeekV4HCA: heavily compressed attention — every closed entry.
	DeepSeekV4HCA
)

func (k DeepSeekV4Kind) String() string {
	switch k {
	case DeepSeekV4Sliding:
		return modelconfig.SlidingAttention
	case DeepSeekV4CSA:
		return modelconfig.CompressedSparse
	case DeepSeekV4HCA:
		return modelconfig.HeavilyCompressed
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// deepSeekV4MaxDim bounds head sizes and head counts read from config.json.
const deepSeekV4MaxDim = 1 << 16

// DeepSeekV4 are the hyper-parameters of a deepseek_v4 text model.
type DeepSeekV4 struct {
	Hidden, Layers, Vocab, MaxPositions int
	// Heads query heads of HeadDim share one K=V head; RopeDim trailing
	// dims of each head rotate (interleaved pairs).
	Heads, HeadDim, RopeDim int
	QLora                   int
	OGroups, OLora          int
	Window                  int
	// Kinds and Ratios give every layer's attention kind and compression
	// ratio (0 for sliding-only layers).
	Kinds  []DeepSeekV4Kind
	Ratios []int
	// The lightning indexer of CSA layers.
	IndexHeads, IndexDim, IndexTopK int
	// Hyper-connections.
	HCMult, SinkhornIters int
	HCEps                 float32
	Eps                   float32
	// Routed experts: Experts per layer (ExpertsPerLayer when a pruned
	// checkpoint says so), TopK of them per token, ExpertWidth wide (the
	// shared expert too). Hash marks the layers routed by token id.
	Experts, TopK, ExpertWidth int
	ExpertsPerLayer            []int
	Hash                       []bool
	// Scoring is scoring_func: "sqrtsoftplus" (also when absent) or
	// "sigmoid".
	Scoring    string
	RouteScale float32
	// SwiGLULimit clamps the routed and the shared experts' SwiGLU.
	SwiGLULimit float32
	// MainRoPE rotates sliding-only layers, CompressRoPE the compressed
	// layers' queries, keys and entries; IndexRoPE is CompressRoPE over
	// the indexer's heads.
	MainRoPE, CompressRoPE, IndexRoPE Rotary
	// FP8Block is the tile of FP8 weight scales (weight_block_size).
	FP8Block [2]int
}

// LayerExperts returns the number of routed experts of layer i.
func (o DeepSeekV4) LayerExperts(i int) int {
	if o.ExpertsPerLayer != nil && i < len(o.ExpertsPerLayer) {
		return o.ExpertsPerLayer[i]
	}
	return o.Experts
}

// deepSeekV4Config is the part of config.json this package reads itself: the keys of
// both spellings, transformers 5.x's (layer_types, compress_rates,
// mlp_layer_types, nested rope_parameters) and DeepSeek's upstream one
// (compress_ratios, num_hash_layers, rope_scaling, qk_rope_head_dim).
type deepSeekV4Config struct {
	Eps            *float64        `json:"rms_norm_eps"`
	QLora          int             `json:"q_lora_rank"`
	OGroups        int             `json:"o_groups"`
	OLora          int             `json:"o_lora_rank"`
	IndexHeads     int             `json:"index_n_heads"`
	IndexDim       int             `json:"index_head_dim"`
	IndexTopK      int             `json:"index_topk"`
	HCMult         *int            `json:"hc_mult"`
	SinkhornIters  *int            `json:"hc_sinkhorn_iters"`
	HCEps          *float64        `json:"hc_eps"`
	SwiGLULimit    *float64        `json:"swiglu_limit"`
	RouteScale     *float64        `json:"routed_scaling_factor"`
	ScoringFunc    string          `json:"scoring_func"`
	NormTopK       *bool           `json:"norm_topk_prob"`
	LayerTypes     []string        `json:"layer_types"`
	CompressRates  map[string]int  `json:"compress_rates"`
	CompressRatios []int           `json:"compress_ratios"`
	MLPLayerTypes  []string        `json:"mlp_layer_types"`
	NumHashLayers  *int            `json:"num_hash_layers"`
	RopeTheta      *float64        `json:"rope_theta"`
	CompressTheta  *float64        `json:"compress_rope_theta"`
	RopeParameters json.RawMessage `json:"rope_parameters"`
	RopeScaling    json.RawMessage `json:"rope_scaling"`
	QKRopeDim      int             `json:"qk_rope_head_dim"`
	Partial        *float64        `json:"partial_rotary_factor"`
	HiddenAct      string          `json:"hidden_act"`
	Quant          *struct {
		Method string `json:"quant_method"`
		Block  []int  `json:"weight_block_size"`
	} `json:"quantization_config"`
}

// ParseDeepSeekV4 reads the options from a normalized config. The layer
// schedules (attention kinds, hash layers) must be in config.json: the
// references' defaults disagree, so mach never guesses them.
func ParseDeepSeekV4(cfg *modelconfig.Config) (DeepSeekV4, error) {
	var x deepSeekV4Config
	if err := cfg.DecodeText(DeepSeekV4Type, &x); err != nil {
		return DeepSeekV4{}, err
	}
	bad := func(format string, args ...any) (DeepSeekV4, error) {
		return DeepSeekV4{}, unsupported(cfg, format, args...)
	}
	o := DeepSeekV4{
		Hidden: cfg.HiddenSize, Layers: cfg.NumLayers, Vocab: cfg.VocabSize, MaxPositions: cfg.MaxPositionEmbeddings,
		Heads: cfg.NumHeads, HeadDim: cfg.HeadDim, QLora: x.QLora, OGroups: x.OGroups, OLora: x.OLora,
		Window: cfg.SlidingWindow, IndexHeads: x.IndexHeads, IndexDim: x.IndexDim, IndexTopK: x.IndexTopK,
		HCMult: 4, SinkhornIters: 20, HCEps: 1e-6, Eps: 1e-6,
		Experts: cfg.NumExperts, TopK: cfg.ExpertsPerToken, ExpertWidth: cfg.MoEIntermediateSize, ExpertsPerLayer: cfg.ExpertsPerLayer,
		Scoring: "sqrtsoftplus", FP8Block: [2]int{128, 128},
	}
	if x.Eps != nil {
		o.Eps = float32(*x.Eps)
	}
	if x.HCMult != nil {
		o.HCMult = *x.HCMult
	}
	if x.SinkhornIters != nil {
		o.SinkhornIters = *x.SinkhornIters
	}
	if x.HCEps != nil {
		o.HCEps = float32(*x.HCEps)
	}
	if o.MaxPositions <= 0 {
		o.MaxPositions = 1 << 20
	}
	switch {
	case o.Hidden <= 0 || o.Layers <= 0 || o.Heads <= 0 || o.HeadDim <= 0 || o.Vocab <= 0:
		return bad("hidden_size, num_hidden_layers, num_attention_heads, head_dim and vocab_size must be positive")
	case o.HeadDim > deepSeekV4MaxDim || o.Heads > deepSeekV4MaxDim || o.IndexDim > deepSeekV4MaxDim || o.IndexHeads > deepSeekV4MaxDim || o.Hidden > 1<<20 ||
		o.QLora > 1<<20 || o.OLora > 1<<20 || o.OGroups > deepSeekV4MaxDim:
		// Buffers and rotary tables are sized from these before any weight
		// is read; real checkpoints are far below the bounds.
		return bad("implausible dimensions: head_dim %d, num_attention_heads %d, index_head_dim %d, index_n_heads %d, hidden_size %d, q_lora_rank %d, o_lora_rank %d, o_groups %d",
			o.HeadDim, o.Heads, o.IndexDim, o.IndexHeads, o.Hidden, o.QLora, o.OLora, o.OGroups)
	case cfg.NumKVHeads != 1:
		return bad("num_key_value_heads %d: DeepSeek-V4 attention has one shared K=V head", cfg.NumKVHeads)
	case o.QLora <= 0 || o.OGroups <= 0 || o.OLora <= 0:
		return bad("q_lora_rank %d, o_groups %d and o_lora_rank %d must be positive", o.QLora, o.OGroups, o.OLora)
	case o.Heads*o.HeadDim%o.OGroups != 0:
		return bad("num_attention_heads·head_dim %d is not a multiple of o_groups %d", o.Heads*o.HeadDim, o.OGroups)
	case o.Window <= 0 || o.Window > 1<<20:
		return bad("sliding_window %d: every DeepSeek-V4 layer attends over a sliding window (of at most 2^20 tokens)", o.Window)
	case o.HCMult <= 0 || o.HCMult > 16 || o.SinkhornIters <= 0 || o.SinkhornIters > 1000:
		return bad("hc_mult %d and hc_sinkhorn_iters %d out of range", o.HCMult, o.SinkhornIters)
	case o.Experts <= 0 || o.TopK <= 0 || o.ExpertWidth <= 0:
		return bad("n_routed_experts %d, num_experts_per_tok %d and moe_intermediate_size %d must be positive", o.Experts, o.TopK, o.ExpertWidth)
	case cfg.NumSharedExperts != 1:
		return bad("n_shared_experts %d: DeepSeek-V4 has one shared expert", cfg.NumSharedExperts)
	case x.HiddenAct != "" && x.HiddenAct != "silu":
		return bad("hidden_act %q: DeepSeek-V4 experts are SwiGLU (silu)", x.HiddenAct)
	case cfg.TieWordEmbeddings:
		return bad("tie_word_embeddings true: DeepSeek-V4 has a separate head")
	}
	// The two references default these differently (transformers: 10 and
	// 1.5; DeepSeek's: 0 and 1), so they must be stated.
	if x.SwiGLULimit == nil {
		return bad("no swiglu_limit: transformers would clamp at 10, DeepSeek's reference not at all; add it to config.json")
	}
	if x.RouteScale == nil {
		return bad("no routed_scaling_factor: transformers would use 1.5, DeepSeek's reference 1; add it to config.json")
	}
	o.SwiGLULimit = float32(*x.SwiGLULimit)
	if *x.SwiGLULimit < 0 {
		return bad("swiglu_limit %g", *x.SwiGLULimit)
	}
	o.RouteScale = float32(*x.RouteScale)
	switch x.ScoringFunc {
	case "", "sqrtsoftplus":
	case "sigmoid":
		o.Scoring = x.ScoringFunc
	default:
		// softmax: DeepSeek's reference leaves the top-k weights unnormalized,
		// transformers 5.17 normalizes them; no V4 checkpoint uses it.
		return bad("scoring_func %q is not supported (sqrtsoftplus and sigmoid are)", x.ScoringFunc)
	}
	if x.NormTopK != nil && !*x.NormTopK {
		return bad("norm_topk_prob false: both references normalize DeepSeek-V4's top-k weights regardless; fix config.json rather than have mach guess")
	}
	if err := o.schedules(cfg, &x); err != nil {
		return DeepSeekV4{}, err
	}
	for i := 0; i < o.Layers; i++ {
		if ne := o.LayerExperts(i); ne < o.TopK {
			return bad("layer %d: %d experts with num_experts_per_tok %d", i, ne, o.TopK)
		}
	}
	if err := o.ropes(cfg, &x); err != nil {
		return DeepSeekV4{}, err
	}
	if q := x.Quant; q != nil && len(q.Block) > 0 {
		if len(q.Block) != 2 || q.Block[0] <= 0 || q.Block[1] <= 0 {
			return bad("quantization_config.weight_block_size %v: want [rows, cols]", q.Block)
		}
		o.FP8Block = [2]int{q.Block[0], q.Block[1]}
	}
	return o, nil
}

// schedules reads the per-layer attention kinds, compression ratios and
// hash layers.
func (o *DeepSeekV4) schedules(cfg *modelconfig.Config, x *deepSeekV4Config) error {
	bad := func(format string, args ...any) error {
		return unsupported(cfg, format, args...)
	}
	n := o.Layers
	o.Kinds, o.Ratios = make([]DeepSeekV4Kind, n), make([]int, n)
	switch {
	case len(x.LayerTypes) > 0:
		if len(x.LayerTypes) < n {
			return bad("layer_types has %d entries for %d layers", len(x.LayerTypes), n)
		}
		csa, hca := 4, 128 // transformers' compress_rates defaults
		if r, ok := x.CompressRates[modelconfig.CompressedSparse]; ok {
			csa = r
		}
		if r, ok := x.CompressRates[modelconfig.HeavilyCompressed]; ok {
			hca = r
		}
		for i, t := range x.LayerTypes[:n] {
			switch t {
			case modelconfig.SlidingAttention:
				o.Kinds[i] = DeepSeekV4Sliding
			case modelconfig.CompressedSparse:
				o.Kinds[i], o.Ratios[i] = DeepSeekV4CSA, csa
			case modelconfig.HeavilyCompressed:
				o.Kinds[i], o.Ratios[i] = DeepSeekV4HCA, hca
			default:
				return bad("layer_types[%d] is %q; DeepSeek-V4 has %s, %s and %s layers", i, t,
					modelconfig.SlidingAttention, modelconfig.CompressedSparse, modelconfig.HeavilyCompressed)
			}
		}
	case len(x.CompressRatios) > 0:
		// DeepSeek's list also covers the MTP layer: keep the main ones.
		if len(x.CompressRatios) < n {
			return bad("compress_ratios has %d entries for %d layers", len(x.CompressRatios), n)
		}
		for i, r := range x.CompressRatios[:n] {
			switch {
			case r == 0:
				o.Kinds[i] = DeepSeekV4Sliding
			case r == 4: // DeepSeek's reference: overlap and indexer exactly when the ratio is 4
				o.Kinds[i], o.Ratios[i] = DeepSeekV4CSA, r
			case r > 0:
				o.Kinds[i], o.Ratios[i] = DeepSeekV4HCA, r
			default:
				return bad("compress_ratios[%d] is %d", i, r)
			}
		}
	default:
		return bad("neither layer_types nor compress_ratios: DeepSeek-V4's attention schedule must come from config.json")
	}
	for i, k := range o.Kinds {
		if k != DeepSeekV4Sliding && (o.Ratios[i] <= 0 || o.Ratios[i] > 1<<16) {
			return bad("layer %d (%s): compression ratio %d", i, k, o.Ratios[i])
		}
		if k == DeepSeekV4CSA && (o.IndexHeads <= 0 || o.IndexDim <= 0 || o.IndexTopK <= 0) {
			return bad("layer %d is %s but index_n_heads %d, index_head_dim %d, index_topk %d", i, k, o.IndexHeads, o.IndexDim, o.IndexTopK)
		}
	}
	o.Hash = make([]bool, n)
	switch {
	case len(x.MLPLayerTypes) > 0:
		if len(x.MLPLayerTypes) < n {
			return bad("mlp_layer_types has %d entries for %d layers", len(x.MLPLayerTypes), n)
		}
		for i, t := range x.MLPLayerTypes[:n] {
			switch t {
			case "hash_moe":
				o.Hash[i] = true
			case "moe":
			default:
				return bad("mlp_layer_types[%d] is %q; DeepSeek-V4 has hash_moe and moe layers", i, t)
			}
		}
	case x.NumHashLayers != nil:
		if *x.NumHashLayers < 0 || *x.NumHashLayers > n {
			return bad("num_hash_layers %d for %d layers", *x.NumHashLayers, n)
		}
		for i := 0; i < *x.NumHashLayers; i++ {
			o.Hash[i] = true
		}
	default:
		return bad("neither mlp_layer_types nor num_hash_layers: which layers route by token hash must come from config.json")
	}
	return nil
}

// ropes reads the two rotary embeddings: "main" (sliding-only layers,
// rope_theta, never scaled) and "compress" (compressed layers and their
// compressors and indexer, compress_rope_theta with the checkpoint's YaRN,
// whose attention factor DeepSeek fixes at 1).
func (o *DeepSeekV4) ropes(cfg *modelconfig.Config, x *deepSeekV4Config) error {
	bad := func(format string, args ...any) error {
		return unsupported(cfg, format, args...)
	}
	partial := 0.0
	if x.Partial != nil {
		partial = *x.Partial
	}
	main := RopeParams{Type: "default", Theta: 10000, Truncate: true}
	if x.RopeTheta != nil {
		main.Theta = *x.RopeTheta
	}
	comp := RopeParams{Type: "default", Theta: 160000, Truncate: true}
	if x.CompressTheta != nil {
		comp.Theta = *x.CompressTheta
	}
	var nested map[string]json.RawMessage
	if len(x.RopeParameters) > 0 && string(x.RopeParameters) != "null" {
		if err := json.Unmarshal(x.RopeParameters, &nested); err != nil {
			return bad("rope_parameters: %v", err)
		}
	}
	_, hasMain := nested["main"]
	_, hasComp := nested["compress"]
	var err error
	switch {
	case hasMain && hasComp:
		// transformers 5.x: one dict per rope type, used as written.
		if main, partial, err = deepSeekV4RopeDict(nested["main"], main, partial, false); err != nil {
			return bad("rope_parameters.main: %v", err)
		}
		if comp, partial, err = deepSeekV4RopeDict(nested["compress"], comp, partial, false); err != nil {
			return bad("rope_parameters.compress: %v", err)
		}
	default:
		// Flat rope_parameters (transformers' legacy form) or DeepSeek's
		// rope_scaling: the scaling applies to the compressed layers only,
		// with attention factor 1.
		for _, raw := range []json.RawMessage{x.RopeParameters, x.RopeScaling} {
			if len(raw) == 0 || string(raw) == "null" {
				continue
			}
			if comp, partial, err = deepSeekV4RopeDict(raw, comp, partial, true); err != nil {
				return bad("rope scaling: %v", err)
			}
		}
	}
	// DeepSeek's reference never scales cos and sin: YaRN's attention factor
	// is 1 unless config.json says otherwise (transformers injects 1.0 when
	// it converts the upstream config).
	if comp.Type == "yarn" && comp.AttentionFactor == 0 {
		comp.AttentionFactor = 1
	}
	if main.Type != "default" && main.Type != "" {
		return bad("the main rotary embedding is %q; DeepSeek-V4 never scales it", main.Type)
	}
	rd := x.QKRopeDim
	if rd == 0 {
		if partial == 0 {
			partial = 64.0 / 512
		}
		rd = int(float64(o.HeadDim) * partial)
	}
	if rd <= 0 || rd%2 != 0 || rd > o.HeadDim {
		return bad("%d rotary dims for head_dim %d (qk_rope_head_dim or partial_rotary_factor)", rd, o.HeadDim)
	}
	o.RopeDim = rd
	main.Dims, comp.Dims = rd, rd
	mk := func(p RopeParams, headDim int) (Rotary, error) {
		inv, scale, err := p.InvFreq()
		if err != nil {
			return Rotary{}, err
		}
		return Rotary{HeadDim: headDim, Dims: rd, Offset: headDim - rd, Interleaved: true, InvFreq: inv, Scale: scale}, nil
	}
	if o.MainRoPE, err = mk(main, o.HeadDim); err != nil {
		return bad("%v", err)
	}
	if o.CompressRoPE, err = mk(comp, o.HeadDim); err != nil {
		return bad("%v", err)
	}
	if o.IndexDim > 0 {
		if o.IndexDim < rd {
			return bad("index_head_dim %d is smaller than the %d rotary dims", o.IndexDim, rd)
		}
		if o.IndexRoPE, err = mk(comp, o.IndexDim); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// deepSeekV4RopeDict applies one rope parameter dict to p: default and YaRN only,
// the base too unless scalingOnly, and a usable attention factor.
func deepSeekV4RopeDict(raw json.RawMessage, p RopeParams, partial float64, scalingOnly bool) (RopeParams, float64, error) {
	var d RopeDict
	if err := json.Unmarshal(raw, &d); err != nil {
		return p, partial, err
	}
	switch t := d.Kind(); t {
	case "", "default":
	case "yarn":
		p.Type = "yarn"
	default:
		return p, partial, fmt.Errorf("rope type %q is not supported (default and yarn are)", t)
	}
	if f := d.AttentionFactor; f != nil && (*f == 0 || math.IsNaN(*f)) {
		return p, partial, fmt.Errorf("attention_factor %g", *f)
	}
	p, partial = d.Apply(p, partial, scalingOnly)
	return p, partial, nil
}
