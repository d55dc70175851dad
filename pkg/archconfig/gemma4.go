package archconfig

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// Gemma4Layer is the geometry of one gemma4 decoder layer.
type Gemma4Layer struct {
	// Kind is modelconfig.SlidingAttention or FullAttention.
	Kind string
	// Heads, KVHeads and HeadDim of the layer's attention: full layers use
	// the global head dim and, with attention_k_eq_v, the global KV heads.
	Heads, KVHeads, HeadDim int
	// Window is the sliding window (0 on full layers).
	Window int
	// KEqV: the layer has no v_proj; values are the raw key projection.
	KEqV bool
	// SharesKV is the layer whose keys and values this one attends over
	// (num_kv_shared_layers), or -1 when it computes its own.
	SharesKV int
	// Slot is the layer's cache layer (-1 on KV-shared layers, which own
	// none).
	Slot int
	// Intermediate is the dense MLP's width (doubled on KV-shared layers
	// with use_double_wide_mlp).
	Intermediate int
	// RoPE rotates q and k.
	RoPE Rotary
}

// Gemma4 are the hyper-parameters of a Gemma 4 MoE text model.
type Gemma4 struct {
	Hidden, Layers       int
	Vocab, MaxPositions  int
	Experts, TopK, Width int
	Eps                  float32
	TiedEmbeddings       bool
	// Softcap is final_logit_softcapping (0: none).
	Softcap float32
	// PerLayerInput is hidden_size_per_layer_input (0: no per-layer
	// inputs); PerLayerVocab the rows of embed_tokens_per_layer.
	PerLayerInput, PerLayerVocab int
	// KVSharedLayers is num_kv_shared_layers: the last ones reuse the keys
	// and values of the last earlier layer of their kind.
	KVSharedLayers int
	Layer          []Gemma4Layer
}

// Slots returns the number of cache layers (layers that own keys and
// values).
func (o Gemma4) Slots() int {
	n := 0
	for _, l := range o.Layer {
		if l.Slot >= 0 {
			n++
		}
	}
	return n
}

// textConfig holds the text_config keys only this architecture reads.
type gemma4Text struct {
	Eps              *float64                              `json:"rms_norm_eps"`
	Softcap          *float64                              `json:"final_logit_softcapping"`
	HiddenActivation string                                `json:"hidden_activation"`
	AttentionBias    bool                                  `json:"attention_bias"`
	Bidirectional    *string                               `json:"use_bidirectional_attention"`
	RopeParameters   map[string]*gemma4Rope                `json:"rope_parameters"`
	PerLayerConfig   map[string]map[string]json.RawMessage `json:"per_layer_config"`
	GlobalHeadDim    *int                                  `json:"global_head_dim"`
	NumGlobalKVHeads *int                                  `json:"num_global_key_value_heads"`
	KVSharedLayers   int                                   `json:"num_kv_shared_layers"`
	PerLayerInput    *int                                  `json:"hidden_size_per_layer_input"`
	PerLayerVocab    *int                                  `json:"vocab_size_per_layer_input"`
	DoubleWideMLP    bool                                  `json:"use_double_wide_mlp"`
	EnableMoEBlock   *bool                                 `json:"enable_moe_block"`
}

type gemma4Rope struct {
	RopeType string   `json:"rope_type"`
	Theta    *float64 `json:"rope_theta"`
	Partial  *float64 `json:"partial_rotary_factor"`
	Factor   *float64 `json:"factor"`
}

// maxHeadDim bounds head dimensions read from a config (real models use
// 256 and 512) before anything is sized from them.
const gemma4MaxHeadDim = 1 << 16

// transformers' defaults (Gemma4TextConfig's fields and __post_init__).
const (
	gemma4DefaultHeadDim       = 256
	gemma4DefaultSlidingWindow = 512
	gemma4DefaultPerLayerInput = 256
	gemma4DefaultPerLayerVocab = 262144
	gemma4DefaultGlobalHeadDim = 512
	gemma4DefaultSlidingTheta  = 10000.0
	gemma4DefaultFullTheta     = 1000000.0
	gemma4DefaultFullPartial   = 0.25
)

// ParseGemma4 reads a gemma4 config. It mirrors transformers 5.17's
// Gemma4TextConfig: per_layer_config overrides when the config carries one
// (transformers writes it), else global_head_dim (default 512) and, with
// attention_k_eq_v, num_global_key_value_heads on full-attention layers.
func ParseGemma4(cfg *modelconfig.Config) (Gemma4, error) {
	bad := func(format string, args ...any) (Gemma4, error) {
		return Gemma4{}, unsupported(cfg, format, args...)
	}
	if cfg.ModelType != Gemma4Type {
		return bad("model_type %q is not %s", cfg.ModelType, Gemma4Type)
	}
	var x gemma4Text
	var keys, top map[string]json.RawMessage
	for _, err := range []error{json.Unmarshal(cfg.Text, &x), json.Unmarshal(cfg.Text, &keys), json.Unmarshal(cfg.Raw, &top)} {
		if err != nil {
			return Gemma4{}, fault.Mark(fmt.Errorf("%s: text config: %w", cfg.Name(), err), fault.ErrIO)
		}
	}
	// An absent key takes transformers' default, which is not always what
	// null or the normalized config's zero means.
	_, hasPerLayerInput := keys["hidden_size_per_layer_input"]
	_, hasHeadDim := keys["head_dim"]
	_, hasWindow := keys["sliding_window"]
	tied := true // PreTrainedConfig's default
	for _, m := range []map[string]json.RawMessage{keys, top} {
		if _, ok := m["tie_word_embeddings"]; ok {
			tied = cfg.TieWordEmbeddings
			break
		}
	}
	o := Gemma4{
		Hidden: cfg.HiddenSize, Layers: cfg.NumLayers, Vocab: cfg.VocabSize, MaxPositions: cfg.MaxPositionEmbeddings,
		Experts: cfg.NumExperts, TopK: cfg.ExpertsPerToken, Width: cfg.MoEIntermediateSize,
		TiedEmbeddings: tied, Eps: 1e-6, KVSharedLayers: x.KVSharedLayers,
		PerLayerInput: gemma4DefaultPerLayerInput, PerLayerVocab: gemma4DefaultPerLayerVocab,
	}
	if x.Eps != nil {
		o.Eps = float32(*x.Eps)
	}
	if x.Softcap != nil {
		o.Softcap = float32(*x.Softcap)
	}
	if hasPerLayerInput {
		o.PerLayerInput = 0 // null switches per-layer inputs off
		if x.PerLayerInput != nil {
			o.PerLayerInput = *x.PerLayerInput
		}
	}
	if x.PerLayerVocab != nil {
		o.PerLayerVocab = *x.PerLayerVocab
	}
	if o.MaxPositions <= 0 {
		o.MaxPositions = 131072
	}
	heads, kvHeads, headDim := cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim
	if !hasHeadDim {
		headDim = gemma4DefaultHeadDim
	}
	switch {
	case o.Hidden <= 0 || o.Layers <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0 || o.Vocab <= 0:
		return bad("hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim and vocab_size must be positive")
	case x.EnableMoEBlock == nil || !*x.EnableMoEBlock:
		return bad("enable_moe_block is not true (transformers' default is false): a dense Gemma 4; mach runs the MoE member (gemma-4-26B-A4B) and has no dense Gemma 4 reference to check against")
	case o.Experts <= 0 || o.TopK <= 0 || o.TopK > o.Experts || o.Width <= 0:
		return bad("num_experts %d, top_k_experts %d, moe_intermediate_size %d do not describe a MoE block", o.Experts, o.TopK, o.Width)
	case cfg.IntermediateSize <= 0:
		return bad("intermediate_size %d: the dense MLP beside the experts needs a width", cfg.IntermediateSize)
	case cfg.ExpertsPerLayer != nil:
		return bad("%s (a non-uniformly pruned checkpoint) is not supported for gemma4 by this build", modelconfig.ExpertsPerLayerKey)
	case x.HiddenActivation != "" && x.HiddenActivation != "gelu_pytorch_tanh":
		return bad("hidden_activation %q (gemma4 uses gelu_pytorch_tanh)", x.HiddenActivation)
	case x.AttentionBias:
		return bad("attention_bias true is not a gemma4 checkpoint this build knows")
	case x.Bidirectional != nil && *x.Bidirectional == "all":
		return bad("use_bidirectional_attention \"all\" (an encoder) cannot generate")
	case o.PerLayerInput < 0 || (o.PerLayerInput > 0 && o.PerLayerVocab < o.Vocab):
		return bad("hidden_size_per_layer_input %d with vocab_size_per_layer_input %d for a vocabulary of %d", o.PerLayerInput, o.PerLayerVocab, o.Vocab)
	case o.KVSharedLayers < 0 || o.KVSharedLayers >= o.Layers:
		return bad("num_kv_shared_layers %d for %d layers (some layer must compute keys and values)", o.KVSharedLayers, o.Layers)
	}
	if len(cfg.MoELayers()) != o.Layers {
		return bad("every gemma4 layer carries the MoE block, but the config makes layers %v routed", cfg.MoELayers())
	}

	// Layer kinds; transformers forces the last layer to full attention.
	kinds := slices.Clone(cfg.LayerTypes)
	if len(kinds) != o.Layers {
		return bad("layer_types has %d entries for %d layers", len(kinds), o.Layers)
	}
	kinds[len(kinds)-1] = modelconfig.FullAttention
	window := cfg.SlidingWindow
	if !hasWindow {
		window = gemma4DefaultSlidingWindow
	}

	// Per-layer attention dimensions.
	type dims struct{ heads, kv, hd int }
	per := make([]dims, o.Layers)
	for i := range per {
		per[i] = dims{heads, kvHeads, headDim}
	}
	if x.PerLayerConfig != nil {
		for key, ov := range x.PerLayerConfig {
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= o.Layers || strconv.Itoa(i) != key {
				return bad("per_layer_config: key %q is not a layer index below %d", key, o.Layers)
			}
			for name, raw := range ov {
				var v int
				if err := json.Unmarshal(raw, &v); err != nil || v <= 0 {
					return bad("per_layer_config[%q].%s = %s: want a positive integer", key, name, raw)
				}
				switch name {
				case "head_dim":
					per[i].hd = v
				case "num_key_value_heads":
					per[i].kv = v
				default:
					return bad("per_layer_config[%q] overrides %q; this build knows head_dim and num_key_value_heads", key, name)
				}
			}
		}
	} else {
		ghd := gemma4DefaultGlobalHeadDim
		if x.GlobalHeadDim != nil && *x.GlobalHeadDim > 0 {
			ghd = *x.GlobalHeadDim
		}
		for i, k := range kinds {
			if k != modelconfig.FullAttention {
				continue
			}
			per[i].hd = ghd
			if cfg.AttentionKEqV && x.NumGlobalKVHeads != nil && *x.NumGlobalKVHeads > 0 {
				per[i].kv = *x.NumGlobalKVHeads
			}
		}
	}

	for i, d := range per {
		if d.hd > gemma4MaxHeadDim || d.kv > d.heads {
			return bad("layer %d: head dim %d (at most %d) with %d key/value heads for %d attention heads", i, d.hd, gemma4MaxHeadDim, d.kv, d.heads)
		}
	}

	// Rotary parameters per layer kind.
	ropes := map[string]Rotary{}
	for _, kind := range []string{modelconfig.SlidingAttention, modelconfig.FullAttention} {
		hd := -1
		for i, k := range kinds {
			if k != kind {
				continue
			}
			if hd >= 0 && per[i].hd != hd {
				return bad("%s layers have head dims %d and %d; transformers computes one rotary table per layer kind", kind, hd, per[i].hd)
			}
			hd = per[i].hd
		}
		if hd < 0 {
			continue
		}
		r, err := gemma4RopeFor(kind, x.RopeParameters[kind], hd, x.RopeParameters == nil)
		if err != nil {
			return bad("rope_parameters[%q]: %v", kind, err)
		}
		ropes[kind] = r
	}

	// KV sharing: layer i ≥ first reads the keys and values of the last
	// layer before first of its kind (transformers' store_full_length_kv).
	first := o.Layers - o.KVSharedLayers
	slot := 0
	for i, k := range kinds {
		d := per[i]
		l := Gemma4Layer{Kind: k, Heads: d.heads, KVHeads: d.kv, HeadDim: d.hd, SharesKV: -1, Slot: -1,
			Intermediate: cfg.IntermediateSize, RoPE: ropes[k]}
		switch k {
		case modelconfig.SlidingAttention:
			if window <= 0 {
				return bad("layer %d is sliding_attention but sliding_window is %d", i, window)
			}
			l.Window = window
		case modelconfig.FullAttention:
			l.KEqV = cfg.AttentionKEqV
		default:
			return bad("layer_types[%d] = %q; gemma4 layers are %s or %s", i, k, modelconfig.SlidingAttention, modelconfig.FullAttention)
		}
		if d.heads%d.kv != 0 {
			return bad("layer %d: %d attention heads are not a multiple of %d key/value heads", i, d.heads, d.kv)
		}
		if i >= first {
			src := -1
			for j := first - 1; j >= 0; j-- {
				if kinds[j] == k {
					src = j
					break
				}
			}
			if src < 0 {
				return bad("layer %d (%s) shares keys and values (num_kv_shared_layers %d), but no earlier layer of its kind computes them", i, k, o.KVSharedLayers)
			}
			if per[src].kv != d.kv || per[src].hd != d.hd {
				return bad("layer %d shares the keys and values of layer %d, whose heads differ (%d×%d vs %d×%d)", i, src, per[src].kv, per[src].hd, d.kv, d.hd)
			}
			l.SharesKV = src
			if x.DoubleWideMLP && first > 0 {
				l.Intermediate *= 2
			}
		} else {
			l.Slot = slot
			slot++
		}
		o.Layer = append(o.Layer, l)
	}
	return o, nil
}

// gemma4RopeFor builds a layer kind's rotary embedding the way transformers'
// Gemma4TextRotaryEmbedding does: "default" rotates the whole head with
// theta (partial_rotary_factor is not read), "proportional" rotates the
// whole head as half-split pairs (i, i+hd/2) of which only the first
// int(partial·hd/2) have a non-zero frequency 1/theta^(2i/hd), divided by
// factor.
func gemma4RopeFor(kind string, p *gemma4Rope, hd int, absent bool) (Rotary, error) {
	if p == nil {
		if !absent {
			return Rotary{}, fmt.Errorf("missing")
		}
		// transformers' defaults when rope_parameters is absent.
		p = &gemma4Rope{RopeType: "default"}
		theta := gemma4DefaultSlidingTheta
		if kind == modelconfig.FullAttention {
			partial := gemma4DefaultFullPartial
			theta = gemma4DefaultFullTheta
			p = &gemma4Rope{RopeType: "proportional", Partial: &partial}
		}
		p.Theta = &theta
	}
	if p.Theta == nil || *p.Theta <= 0 {
		return Rotary{}, fmt.Errorf("rope_theta must be positive")
	}
	params := RopeParams{Type: p.RopeType, Theta: *p.Theta, Dims: hd}
	factor := 1.0
	switch p.RopeType {
	case "", "default":
		params.Type = "default"
	case "proportional":
		partial := 1.0
		if p.Partial != nil {
			partial = *p.Partial
		}
		if partial <= 0 || partial > 1 {
			return Rotary{}, fmt.Errorf("partial_rotary_factor %g", partial)
		}
		// Python: int(partial * hd // 2), floor division of a float.
		params.RopeAngles = int(math.Floor(partial * float64(hd) / 2))
		if params.RopeAngles == 0 {
			return Rotary{}, fmt.Errorf("partial_rotary_factor %g rotates no pair of a %d-dim head", partial, hd)
		}
		if p.Factor != nil {
			factor = *p.Factor
		}
		if factor <= 0 {
			return Rotary{}, fmt.Errorf("factor %g", factor)
		}
	default:
		return Rotary{}, fmt.Errorf("rope_type %q is not supported for gemma4 by this build (default and proportional are)", p.RopeType)
	}
	inv, scale, err := params.InvFreq()
	if err != nil {
		return Rotary{}, err
	}
	if factor != 1 {
		for i := range inv {
			inv[i] = float32(float64(inv[i]) / factor)
		}
	}
	return Rotary{HeadDim: hd, Dims: hd, InvFreq: inv, Scale: scale}, nil
}
