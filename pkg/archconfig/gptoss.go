package archconfig

import "github.com/maniac-ai/mach/pkg/modelconfig"

// gpt_oss defaults when config.json has no swiglu_limit or sliding_window.
const (
	GptOssDefaultLimit  = 7
	GptOssDefaultWindow = 128
)

// GptOss are the hyper-parameters of a gpt_oss text model.
type GptOss struct {
	Hidden, Layers          int
	Heads, KVHeads, HeadDim int
	Vocab, MaxPositions     int
	Experts, TopK           int
	ExpertWidth             int
	TiedEmbeddings          bool
	Eps                     float32
	RoPE                    Rotary
	// Window is the sliding window of the layers Sliding marks.
	Window  int
	Sliding []bool
	// SwiGLULimit is the experts' clamp (swiglu_limit, default
	// GptOssDefaultLimit).
	SwiGLULimit float32
	// ExpertsPerLayer is num_experts_per_layer (a checkpoint pruned to
	// different counts per layer), nil when every layer has Experts.
	ExpertsPerLayer []int
}

// LayerExperts returns the number of routed experts of layer i.
func (o GptOss) LayerExperts(i int) int {
	if o.ExpertsPerLayer != nil && i < len(o.ExpertsPerLayer) {
		return o.ExpertsPerLayer[i]
	}
	return o.Experts
}

// ParseGptOss reads the options from a normalized config, decoding the
// keys only this architecture uses from its text config.
func ParseGptOss(cfg *modelconfig.Config) (GptOss, error) {
	var x struct {
		Eps         *float64 `json:"rms_norm_eps"`
		SwiGLULimit *float64 `json:"swiglu_limit"`
		Bias        *bool    `json:"attention_bias"`
	}
	if err := cfg.DecodeText(GptOssType, &x); err != nil {
		return GptOss{}, err
	}
	o := GptOss{
		Hidden: cfg.HiddenSize, Layers: cfg.NumLayers, Heads: cfg.NumHeads, KVHeads: cfg.NumKVHeads, HeadDim: cfg.HeadDim,
		Vocab: cfg.VocabSize, MaxPositions: cfg.MaxPositionEmbeddings,
		Experts: cfg.NumExperts, TopK: cfg.ExpertsPerToken, ExpertWidth: cfg.MoEIntermediateSize, ExpertsPerLayer: cfg.ExpertsPerLayer,
		TiedEmbeddings: cfg.TieWordEmbeddings, Eps: 1e-5, Window: cfg.SlidingWindow,
		SwiGLULimit: GptOssDefaultLimit,
	}
	if x.Eps != nil {
		o.Eps = float32(*x.Eps)
	}
	if x.SwiGLULimit != nil {
		o.SwiGLULimit = float32(*x.SwiGLULimit)
	}
	if o.Window == 0 {
		o.Window = GptOssDefaultWindow
	}
	if o.MaxPositions <= 0 {
		o.MaxPositions = 131072
	}
	bad := func(format string, args ...any) (GptOss, error) {
		return GptOss{}, unsupported(cfg, format, args...)
	}
	switch {
	case o.Hidden <= 0 || o.Layers <= 0 || o.Heads <= 0 || o.KVHeads <= 0 || o.HeadDim <= 0 || o.Vocab <= 0:
		return bad("hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim and vocab_size must be positive")
	case o.Heads%o.KVHeads != 0:
		return bad("num_attention_heads %d is not a multiple of num_key_value_heads %d", o.Heads, o.KVHeads)
	case o.ExpertWidth <= 0:
		return bad("intermediate_size (the expert width) is %d", o.ExpertWidth)
	case o.Window < 0:
		return bad("sliding_window %d", o.Window)
	case x.Bias != nil && !*x.Bias:
		return bad("attention_bias false: gpt-oss checkpoints have q/k/v/o biases")
	case o.SwiGLULimit <= 0:
		return bad("swiglu_limit %g: want a positive clamp", o.SwiGLULimit)
	}
	o.Sliding = make([]bool, o.Layers)
	for i := range o.Sliding {
		switch k := cfg.LayerKind(i); k {
		case modelconfig.SlidingAttention:
			o.Sliding[i] = true
		case modelconfig.FullAttention:
		default:
			return bad("layer_types[%d] is %q; gpt_oss has sliding_attention and full_attention layers", i, k)
		}
		if !cfg.IsMoELayer(i) {
			return bad("layer %d has no routed experts (num_local_experts %d); every gpt_oss layer is a MoE layer", i, cfg.NumExperts)
		}
		if ne := o.LayerExperts(i); ne <= 0 || o.TopK <= 0 || o.TopK > ne {
			return bad("layer %d: %d experts with num_experts_per_tok %d", i, ne, o.TopK)
		}
	}
	rp, err := RopeRotary(cfg.Text, o.HeadDim)
	if err != nil {
		return GptOss{}, unsupportedErr(cfg, err)
	}
	o.RoPE = rp
	return o, nil
}
