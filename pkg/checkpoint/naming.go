package checkpoint

import (
	"strconv"
	"strings"
)

// Proj is a routed-expert projection.
type Proj string

// The projections. GateUp is the fused gate+up tensor of transformers 5.x
// and gpt-oss.
const (
	Gate   Proj = "gate"
	Up     Proj = "up"
	Down   Proj = "down"
	GateUp Proj = "gate_up"
)

// Part is what a tensor holds for its projection.
type Part string

// The parts. Biases are MLX affine zero-points; Bias is a Linear layer's
// additive bias (gpt-oss experts); Blocks and Scales of gpt-oss MXFP4 are
// the packed e2m1 codes and e8m0 exponents; Scale is DeepSeek's FP4/FP8
// block scale; WeightScaleInv the Hugging Face FP8 block scale.
const (
	Weight         Part = "weight"
	Scales         Part = "scales"
	Biases         Part = "biases"
	Bias           Part = "bias"
	Blocks         Part = "blocks"
	Scale          Part = "scale"
	WeightScaleInv Part = "weight_scale_inv"
)

// Kind classifies a tensor of a checkpoint.
type Kind int

// The tensor kinds.
const (
	// Other is any tensor the text model uses that is not a routed expert
	// (embeddings, attention, norms, routers, shared experts, dense MLPs).
	Other Kind = iota
	// RoutedExpert is a routed-expert weight, scale, bias or block tensor.
	RoutedExpert
	// Skipped belongs to a part a text engine never loads (vision and
	// audio towers, their projectors).
	Skipped
)

// ExpertTensor says what a routed-expert tensor holds.
type ExpertTensor struct {
	// Layer is the decoder layer (or the MTP layer when MTP is set).
	Layer int
	MTP   bool
	// Expert is the expert index, or -1 when the tensor stacks every
	// expert of the layer along axis 0.
	Expert int
	Proj   Proj
	Part   Part
	// Module is the tensor name without its part suffix, the key MLX uses
	// for per-module quantization overrides.
	Module string
	// Transposed: the fused bf16 tensor is stored input-major, [E, in, out]
	// (gpt-oss as transformers dequantizes and saves it).
	Transposed bool
	// Interleaved: a GateUp tensor alternates gate and up rows (even =
	// gate, gpt-oss); otherwise gate is the first half and up the second.
	Interleaved bool
}

// Stacked reports whether the tensor holds every expert of its layer.
func (t ExpertTensor) Stacked() bool { return t.Expert < 0 }

// textPrefixes are the prefixes in front of "layers.N." in the text model's
// tensor names: transformers (model., model.language_model. for wrapped
// configs), MLX conversions (language_model.model.) and DeepSeek's native
// names (none).
var textPrefixes = []string{"model.language_model.", "language_model.model.", "language_model.", "model.", ""}

// skippedPrefixes mark the multimodal towers a text engine never loads.
var skippedPrefixes = []string{
	"model.visual.", "visual.", "model.vision_tower.", "vision_tower.", "model.embed_vision.",
	"model.audio_tower.", "audio_tower.", "model.embed_audio.", "multi_modal_projector.",
	"model.multi_modal_projector.", "vision_model.", "model.vision_model.",
}

// Classify returns what a tensor of a modelType checkpoint is and, for a
// routed expert, which layer, expert, projection and part it holds. It is
// the one place that knows every naming scheme mach reads:
//
//   - per expert (Hugging Face hub files, engine layout):
//     model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight,
//     layers.L.ffn.experts.E.w{1,2,3}.{weight,scale} (DeepSeek native),
//     model.language_model.layers.L.experts.E.… (gemma4);
//   - fused and stacked (transformers 5.x save_pretrained):
//     …mlp.experts.gate_up_proj [E, 2I, H] and down_proj [E, H, I] with no
//     ".weight"; gemma4 …layers.L.experts.gate_up_proj; gpt-oss bf16
//     …mlp.experts.gate_up_proj [E, H, 2I] (transposed, interleaved) and
//     gate_up_proj_bias, or MXFP4 …gate_up_proj_blocks / _scales;
//   - stacked per projection (MLX conversions):
//     …mlp.switch_mlp.{gate,up,down}_proj.{weight,scales,biases},
//     gemma4 …experts.switch_glu.…, gpt-oss …mlp.experts.{gate,up,down}_proj.
//     {weight,scales,bias}, DeepSeek …ffn.experts.w{1,2,3}.{weight,scales,biases}.
//
// w1, w3 and w2 are DeepSeek's gate, up and down.
func Classify(modelType, name string) (Kind, ExpertTensor) {
	for _, p := range skippedPrefixes {
		if strings.HasPrefix(name, p) {
			return Skipped, ExpertTensor{}
		}
	}
	layer, mtp, rest, ok := splitLayer(name)
	if !ok {
		return Other, ExpertTensor{}
	}
	t, ok := parseExpert(modelType, rest)
	if !ok {
		return Other, ExpertTensor{}
	}
	t.Layer, t.MTP = layer, mtp
	// The module path has no part suffix; fused transformers tensors have
	// none (or "_bias", "_blocks", "_scales").
	if m, ok := strings.CutSuffix(name, "."+string(t.Part)); ok {
		t.Module = m
	} else if m, ok := strings.CutSuffix(name, "_"+string(t.Part)); ok {
		t.Module = m
	} else {
		t.Module = name
	}
	return RoutedExpert, t
}

// splitLayer finds "layers.N." (or an MTP layer: "mtp.layers.N.", "mtp.N.")
// after one of the text prefixes and returns N and the remainder.
func splitLayer(name string) (layer int, mtp bool, rest string, ok bool) {
	for _, p := range textPrefixes {
		if !strings.HasPrefix(name, p) {
			continue
		}
		s := name[len(p):]
		switch {
		case strings.HasPrefix(s, "layers."):
			s = s[len("layers."):]
		case strings.HasPrefix(s, "mtp.layers."):
			s, mtp = s[len("mtp.layers."):], true
		case strings.HasPrefix(s, "mtp."):
			s, mtp = s[len("mtp."):], true
		default:
			continue
		}
		n, after, found := strings.Cut(s, ".")
		if !found {
			continue
		}
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 || i > 1<<20 || strconv.Itoa(i) != n {
			continue
		}
		return i, mtp, after, true
	}
	return 0, false, "", false
}

var projNames = map[string]Proj{
	"gate_proj": Gate, "up_proj": Up, "down_proj": Down, "gate_up_proj": GateUp,
	"w1": Gate, "w3": Up, "w2": Down,
}

var partNames = map[string]Part{
	"weight": Weight, "scales": Scales, "biases": Biases, "bias": Bias,
	"scale": Scale, "weight_scale_inv": WeightScaleInv,
}

// parseExpert parses the part of a name after "layers.N.".
func parseExpert(modelType, rest string) (ExpertTensor, bool) {
	// Strip the block name: mlp. (HF, MLX), ffn. (DeepSeek native), or
	// none (gemma4 puts experts directly under the layer).
	s := rest
	for _, b := range []string{"mlp.", "ffn.", "block_sparse_moe."} {
		if strings.HasPrefix(s, b) {
			s = s[len(b):]
			break
		}
	}
	switch {
	case strings.HasPrefix(s, "switch_mlp."):
		return parseProjPart(s[len("switch_mlp."):], -1)
	case strings.HasPrefix(s, "experts.switch_glu."):
		return parseProjPart(s[len("experts.switch_glu."):], -1)
	case strings.HasPrefix(s, "experts."):
		s = s[len("experts."):]
	default:
		return ExpertTensor{}, false
	}
	// experts.E.<proj>.<part>: one tensor per expert.
	if n, after, ok := strings.Cut(s, "."); ok {
		if e, err := strconv.Atoi(n); err == nil && e >= 0 && e <= 1<<20 && strconv.Itoa(e) == n {
			return parseProjPart(after, e)
		}
	}
	// Fused transformers tensors without a part suffix, and gpt-oss's
	// _bias / _blocks / _scales variants.
	for _, p := range []string{"gate_up_proj", "down_proj"} {
		var part Part
		switch s {
		case p:
			part = Weight
		case p + "_bias":
			part = Bias
		case p + "_blocks":
			part = Blocks
		case p + "_scales":
			part = Scales
		default:
			continue
		}
		t := ExpertTensor{Expert: -1, Proj: projNames[p], Part: part}
		if modelType == "gpt_oss" {
			// Only the dequantized bf16 form is input-major; the MXFP4
			// blocks keep rows = outputs. Both interleave gate/up.
			t.Transposed = part == Weight
			t.Interleaved = t.Proj == GateUp
		}
		return t, true
	}
	// experts.<proj>.<part>: stacked per projection (MLX gpt-oss and
	// DeepSeek), or the fused tensors with a .weight suffix.
	return parseProjPart(s, -1)
}

func parseProjPart(s string, expert int) (ExpertTensor, bool) {
	p, part, ok := strings.Cut(s, ".")
	if !ok {
		return ExpertTensor{}, false
	}
	proj, ok1 := projNames[p]
	pt, ok2 := partNames[part]
	if !ok1 || !ok2 {
		return ExpertTensor{}, false
	}
	return ExpertTensor{Expert: expert, Proj: proj, Part: pt}, true
}

// BlockPrefix returns the MoE block prefix of a routed-expert tensor name:
// everything before "experts." or "switch_mlp." ("model.layers.3.mlp.",
// "layers.2.ffn.", "model.language_model.layers.0." for gemma4). ok is
// false when Classify does not make name a routed expert.
func BlockPrefix(modelType, name string) (prefix string, ok bool) {
	kind, _ := Classify(modelType, name)
	if kind != RoutedExpert {
		return "", false
	}
	_, _, rest, _ := splitLayer(name)
	head := name[:len(name)-len(rest)] // ends in "layers.N."
	i := len(rest)
	for _, m := range []string{"experts.", "switch_mlp."} {
		if j := strings.Index(rest, m); j >= 0 && j < i {
			i = j
		}
	}
	return head + rest[:i], true
}

// ExpertName returns the name of one routed-expert tensor in the
// per-expert engine layout that mach-prune writes and the loaders and mach
// check read: block (see BlockPrefix) + "experts.<e>." + the projection +
// "." + the part. Projections are gate_proj, up_proj and down_proj (w1, w3
// and w2 for deepseek_v4, its native names); gate and up are always
// separate [out, in] matrices. Parts keep their meaning: weight (MLX packed
// U32 codes when quantized), scales, biases (MLX zero-points), bias (the
// Linear bias), scale and weight_scale_inv (DeepSeek / FP8 block scales).
func ExpertName(modelType, block string, expert int, p Proj, part Part) string {
	return block + "experts." + strconv.Itoa(expert) + "." + ProjName(modelType, p) + "." + string(part)
}

// ProjName is the engine layout's module name of a projection.
func ProjName(modelType string, p Proj) string {
	if modelType == "deepseek_v4" {
		switch p {
		case Gate:
			return "w1"
		case Up:
			return "w3"
		case Down:
			return "w2"
		}
	}
	return string(p) + "_proj"
}

// RouterKind says how a router tensor depends on the routed experts.
type RouterKind int

// The router tensor kinds.
const (
	// NotRouter: not a router tensor indexed by expert (this includes
	// router tensors over the hidden size, such as gemma4's router.scale).
	NotRouter RouterKind = iota
	// RouterRows: axis 0 indexes the layer's routed experts (the router
	// weight and its MLX scales/biases, a router bias, gemma4's
	// per_expert_scale, DeepSeek's e_score_correction_bias).
	RouterRows
	// RouterHash: the values are expert ids (DeepSeek hash layers'
	// gate.tid2eid, [vocab, top-k]).
	RouterHash
)

// RouterTensor describes a router tensor.
type RouterTensor struct {
	Kind  RouterKind
	Layer int
	MTP   bool
}

// ClassifyRouter recognises the routers of the architectures mach knows:
// …mlp.gate.{weight,scales,biases,bias,e_score_correction_bias} (Qwen,
// DeepSeek under mlp.), …ffn.gate.{weight,bias} and ffn.gate.tid2eid
// (DeepSeek native), …mlp.router.{weight,bias,scales,biases} (gpt-oss) and
// …layers.L.router.proj.* with router.per_expert_scale (gemma4).
// modelType is accepted for symmetry with Classify; the schemes do not
// collide across the architectures.
func ClassifyRouter(modelType, name string) RouterTensor {
	layer, mtp, rest, ok := splitLayer(name)
	if !ok {
		return RouterTensor{}
	}
	block := false
	for _, b := range []string{"mlp.", "ffn.", "block_sparse_moe."} {
		if s, found := strings.CutPrefix(rest, b); found {
			rest, block = s, true
			break
		}
	}
	rows := func() RouterTensor { return RouterTensor{Kind: RouterRows, Layer: layer, MTP: mtp} }
	isPart := func(s string) bool {
		switch Part(s) {
		case Weight, Scales, Biases, Bias:
			return true
		}
		return false
	}
	switch {
	case block && rest == "gate.tid2eid":
		return RouterTensor{Kind: RouterHash, Layer: layer, MTP: mtp}
	case block && rest == "gate.e_score_correction_bias":
		return rows()
	case block && strings.HasPrefix(rest, "gate.") && isPart(rest[len("gate."):]):
		return rows()
	case block && strings.HasPrefix(rest, "router.") && isPart(rest[len("router."):]):
		return rows()
	case !block && strings.HasPrefix(rest, "router.proj.") && isPart(rest[len("router.proj."):]):
		return rows()
	case !block && rest == "router.per_expert_scale":
		return rows()
	}
	return RouterTensor{}
}
