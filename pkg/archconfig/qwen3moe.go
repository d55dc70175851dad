package archconfig

import "github.com/maniac-ai/mach/pkg/modelconfig"

// Qwen3MoE are the hyper-parameters of a qwen3_moe text model.
type Qwen3MoE struct {
	Hidden, Layers           int
	Heads, KVHeads, HeadDim  int
	Vocab, MaxPositions      int
	Intermediate             int // dense layers
	Experts, TopK            int
	ExpertWidth              int
	NormTopK, TiedEmbeddings bool
	Eps                      float32
	RoPE                     Rotary
	Window                   int
	// MoE[i] reports whether layer i is routed.
	MoE []bool
	// ExpertsPerLayer is config.json's num_experts_per_layer (a checkpoint
	// pruned to different counts per layer); nil when every MoE layer has
	// Experts. Use LayerExperts.
	ExpertsPerLayer []int
}

// LayerExperts returns the number of routed experts of layer i.
func (o Qwen3MoE) LayerExperts(i int) int {
	if o.ExpertsPerLayer != nil && i < len(o.ExpertsPerLayer) {
		return o.ExpertsPerLayer[i]
	}
	return o.Experts
}

// ParseQwen3MoE reads the options from a normalized config, decoding the
// keys only this architecture uses from its text config.
func ParseQwen3MoE(cfg *modelconfig.Config) (Qwen3MoE, error) {
	var x struct {
		Eps              *float64 `json:"rms_norm_eps"`
		NormTopK         *bool    `json:"norm_topk_prob"`
		AttentionBias    bool     `json:"attention_bias"`
		UseSlidingWindow bool     `json:"use_sliding_window"`
		SlidingWindow    *int     `json:"sliding_window"`
		HiddenAct        string   `json:"hidden_act"`
	}
	if err := cfg.DecodeText(Qwen3MoEType, &x); err != nil {
		return Qwen3MoE{}, err
	}
	o := Qwen3MoE{
		Hidden: cfg.HiddenSize, Layers: cfg.NumLayers, Heads: cfg.NumHeads, KVHeads: cfg.NumKVHeads, HeadDim: cfg.HeadDim,
		Vocab: cfg.VocabSize, MaxPositions: cfg.MaxPositionEmbeddings, Intermediate: cfg.IntermediateSize,
		Experts: cfg.NumExperts, TopK: cfg.ExpertsPerToken, ExpertWidth: cfg.MoEIntermediateSize, ExpertsPerLayer: cfg.ExpertsPerLayer,
		TiedEmbeddings: cfg.TieWordEmbeddings, Eps: 1e-6,
	}
	if o.HeadDim == 0 && o.Heads > 0 {
		o.HeadDim = o.Hidden / o.Heads
	}
	if x.Eps != nil {
		o.Eps = float32(*x.Eps)
	}
	if x.NormTopK != nil {
		o.NormTopK = *x.NormTopK
	}
	if x.UseSlidingWindow && x.SlidingWindow != nil {
		o.Window = *x.SlidingWindow
	}
	bad := func(format string, args ...any) (Qwen3MoE, error) {
		return Qwen3MoE{}, unsupported(cfg, format, args...)
	}
	switch {
	case o.Hidden <= 0 || o.Layers <= 0 || o.Heads <= 0 || o.KVHeads <= 0 || o.Vocab <= 0:
		return bad("hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads and vocab_size must be positive")
	case o.HeadDim <= 0 || o.HeadDim > 8192:
		return bad("head_dim %d is not a plausible attention head size", o.HeadDim)
	case o.Heads%o.KVHeads != 0:
		return bad("num_attention_heads %d is not a multiple of num_key_value_heads %d", o.Heads, o.KVHeads)
	case x.AttentionBias:
		return bad("attention_bias true is not a qwen3_moe checkpoint this build knows")
	case x.HiddenAct != "" && x.HiddenAct != "silu":
		return bad("hidden_act %q (qwen3_moe uses silu)", x.HiddenAct)
	}
	if o.MaxPositions <= 0 {
		o.MaxPositions = 32768
	}
	o.MoE = make([]bool, o.Layers)
	for i := range o.MoE {
		o.MoE[i] = cfg.IsMoELayer(i)
		if ne := o.LayerExperts(i); o.MoE[i] && (ne <= 0 || o.TopK <= 0 || o.TopK > ne || o.ExpertWidth <= 0) {
			return bad("layer %d is a MoE layer but num_experts %d, num_experts_per_tok %d, moe_intermediate_size %d", i, ne, o.TopK, o.ExpertWidth)
		}
		if !o.MoE[i] && o.Intermediate <= 0 {
			return bad("layer %d is dense but intermediate_size is %d", i, o.Intermediate)
		}
	}
	rp, err := RopeRotary(cfg.Text, o.HeadDim)
	if err != nil {
		return Qwen3MoE{}, unsupportedErr(cfg, err)
	}
	o.RoPE = rp
	return o, nil
}
