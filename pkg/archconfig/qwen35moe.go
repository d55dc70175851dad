package archconfig

import "github.com/maniac-ai/mach/pkg/modelconfig"

// Qwen35MoE are the hyper-parameters of a qwen3_5_moe text model.
type Qwen35MoE struct {
	Hidden, Layers          int
	Heads, KVHeads, HeadDim int
	Vocab, MaxPositions     int
	// Experts[i] is layer i's number of routed experts (pruned checkpoints
	// may differ per layer); TopK of them run per token.
	Experts []int
	// NumExperts is num_experts (the MTP head's layers have that many).
	NumExperts     int
	TopK           int
	ExpertWidth    int
	SharedWidth    int
	TiedEmbeddings bool
	Eps            float32
	RoPE           Rotary
	// Linear[i] reports whether layer i is a Gated DeltaNet layer (else
	// gated full attention).
	Linear []bool
	// Gated DeltaNet geometry.
	LinearKeyHeads, LinearValueHeads int
	LinearKeyDim, LinearValueDim     int
	ConvKernel                       int
	// MTPLayers is mtp_num_hidden_layers (the checkpoint may still lack
	// the tensors: MLX conversions drop them).
	MTPLayers int
}

// ConvDim returns the channels of the convolution (q, k and v together).
func (o Qwen35MoE) ConvDim() int {
	return 2*o.LinearKeyHeads*o.LinearKeyDim + o.LinearValueHeads*o.LinearValueDim
}

// ParseQwen35MoE reads the options from a normalized config, decoding the
// keys only this architecture uses from its text config.
func ParseQwen35MoE(cfg *modelconfig.Config) (Qwen35MoE, error) {
	var x struct {
		Eps            *float64 `json:"rms_norm_eps"`
		HiddenAct      string   `json:"hidden_act"`
		AttentionBias  bool     `json:"attention_bias"`
		AttnOutputGate *bool    `json:"attn_output_gate"`
		NormTopK       *bool    `json:"norm_topk_prob"`
	}
	if err := cfg.DecodeText(Qwen35MoEType, &x); err != nil {
		return Qwen35MoE{}, err
	}
	o := Qwen35MoE{
		Hidden: cfg.HiddenSize, Layers: cfg.NumLayers, Heads: cfg.NumHeads, KVHeads: cfg.NumKVHeads, HeadDim: cfg.HeadDim,
		Vocab: cfg.VocabSize, MaxPositions: cfg.MaxPositionEmbeddings,
		NumExperts: cfg.NumExperts, TopK: cfg.ExpertsPerToken, ExpertWidth: cfg.MoEIntermediateSize, SharedWidth: cfg.SharedExpertIntermediateSize,
		TiedEmbeddings: cfg.TieWordEmbeddings, Eps: 1e-6,
		LinearKeyHeads: cfg.LinearNumKeyHeads, LinearValueHeads: cfg.LinearNumValueHeads,
		LinearKeyDim: cfg.LinearKeyHeadDim, LinearValueDim: cfg.LinearValueHeadDim, ConvKernel: cfg.LinearConvKernelDim,
		MTPLayers: cfg.MTPLayers,
	}
	if o.HeadDim == 0 && o.Heads > 0 {
		o.HeadDim = o.Hidden / o.Heads
	}
	if x.Eps != nil {
		o.Eps = float32(*x.Eps)
	}
	if o.ConvKernel == 0 {
		o.ConvKernel = 4 // transformers' default linear_conv_kernel_dim
	}
	if o.MaxPositions <= 0 {
		o.MaxPositions = 262144
	}
	bad := func(format string, args ...any) (Qwen35MoE, error) {
		return Qwen35MoE{}, unsupported(cfg, format, args...)
	}
	switch {
	case o.Hidden <= 0 || o.Layers <= 0 || o.Heads <= 0 || o.KVHeads <= 0 || o.HeadDim <= 0 || o.Vocab <= 0:
		return bad("hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim and vocab_size must be positive")
	case o.Heads%o.KVHeads != 0:
		return bad("num_attention_heads %d is not a multiple of num_key_value_heads %d", o.Heads, o.KVHeads)
	case x.AttentionBias:
		return bad("attention_bias true is not a qwen3_5_moe checkpoint this build knows")
	case x.AttnOutputGate != nil && !*x.AttnOutputGate:
		return bad("attn_output_gate false: qwen3_5_moe's full-attention layers are always gated")
	case x.NormTopK != nil && !*x.NormTopK:
		return bad("norm_topk_prob false: qwen3_5_moe always renormalizes its top-k routing weights")
	case x.HiddenAct != "" && x.HiddenAct != "silu":
		return bad("hidden_act %q (qwen3_5_moe uses silu)", x.HiddenAct)
	case o.TopK <= 0 || o.ExpertWidth <= 0 || o.SharedWidth <= 0:
		return bad("num_experts_per_tok %d, moe_intermediate_size %d and shared_expert_intermediate_size %d must be positive",
			o.TopK, o.ExpertWidth, o.SharedWidth)
	}
	o.Experts = make([]int, o.Layers)
	o.Linear = make([]bool, o.Layers)
	anyLinear := false
	for i := range o.Layers {
		o.Experts[i] = cfg.LayerExperts(i)
		if o.Experts[i] < o.TopK {
			return bad("layer %d has %d routed experts, fewer than num_experts_per_tok %d (every qwen3_5_moe layer is a MoE layer)", i, o.Experts[i], o.TopK)
		}
		switch k := cfg.LayerKind(i); k {
		case modelconfig.LinearAttention:
			o.Linear[i], anyLinear = true, true
		case modelconfig.FullAttention:
		default:
			return bad("layer %d has attention kind %q (qwen3_5_moe has linear_attention and full_attention)", i, k)
		}
	}
	if anyLinear {
		switch {
		case o.LinearKeyHeads <= 0 || o.LinearValueHeads <= 0 || o.LinearKeyDim <= 0 || o.LinearValueDim <= 0:
			return bad("linear_num_key_heads, linear_num_value_heads, linear_key_head_dim and linear_value_head_dim must be positive")
		case o.LinearValueHeads%o.LinearKeyHeads != 0:
			return bad("linear_num_value_heads %d is not a multiple of linear_num_key_heads %d", o.LinearValueHeads, o.LinearKeyHeads)
		case o.ConvKernel < 1:
			return bad("linear_conv_kernel_dim %d", o.ConvKernel)
		}
	}
	// With text-only input the three M-RoPE position streams are equal, so
	// interleaved M-RoPE is plain RoPE over the rotary dims.
	rp, err := RopeRotary(cfg.Text, o.HeadDim)
	if err != nil {
		return Qwen35MoE{}, unsupportedErr(cfg, err)
	}
	o.RoPE = rp
	return o, nil
}
