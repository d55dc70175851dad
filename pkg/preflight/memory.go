package preflight

import (
	"math"
	"strings"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/hostmem"
	"github.com/maniac-ai/mach/pkg/kvcache/kvsize"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/registry"
)

// Memory verdicts.
const (
	Fits    = "fits"
	Tight   = "tight"
	WontFit = "wont_fit"
	Unknown = "unknown"
)

// Verdict thresholds: the working set fits when it uses at most FitsRatio of
// the available memory, is tight up to all of it, and won't fit beyond.
// The margin covers what the estimate leaves out (activations, scratch
// buffers, the runtime, other processes growing).
const (
	FitsRatio = 0.80
)

// DefaultContextLength caps the default context of the KV estimate.
const DefaultContextLength = 8192

// kvBytesPerValue: KV caches hold bf16/f16 values.
const kvBytesPerValue = 2

// recurrentBytesPerValue: the Gated DeltaNet state is kept in fp32.
const recurrentBytesPerValue = 4

// MemoryOptions tune the estimate.
type MemoryOptions struct {
	// ContextLength for the KV estimate; 0 means min(max_position_embeddings,
	// DefaultContextLength).
	ContextLength int
	// ExpertCacheBytes is the streaming expert-cache budget; 0 means all
	// experts resident.
	ExpertCacheBytes int64
	// Host reads the host's memory; nil means hostmem.Read.
	Host func() (hostmem.Info, error)
}

// Memory is the estimate. Byte counts are 0 when unknown; Verdict says
// Unknown then.
type Memory struct {
	Verdict         string
	ExpertsBytes    int64
	NonExpertBytes  int64
	KVBytes         int64
	ContextLength   int
	WorkingSetBytes int64
	AvailableBytes  int64
	// ExpertCacheBytes is the streaming budget used (0 when resident).
	ExpertCacheBytes int64
	// FromConfig: weight sizes come from config arithmetic, not from the
	// safetensors headers.
	FromConfig bool
	// Note explains an unknown verdict or how available memory was read.
	Note string
}

// EstimateMemory estimates the bytes a checkpoint needs and compares them
// with the host's available memory.
func EstimateMemory(in *checkpoint.Inspection, arch registry.Arch, opts MemoryOptions) Memory {
	cfg := in.Config
	m := Memory{ContextLength: opts.ContextLength, ExpertCacheBytes: opts.ExpertCacheBytes}
	if m.ContextLength <= 0 {
		m.ContextLength = DefaultContextLength
		if p := cfg.MaxPositionEmbeddings; p > 0 && p < m.ContextLength {
			m.ContextLength = p
		}
	}
	switch {
	case in.Sidecar.Valid && in.Quant.Source == "sidecar":
		// The sidecar holds the experts that are served (GGUF experts).
		m.ExpertsBytes = in.Sidecar.Layout.TotalBytes()
		m.NonExpertBytes = in.NonExpertBytes
		if !in.WeightsInspected {
			m.NonExpertBytes, m.FromConfig = nonExpertFromConfig(cfg), true
		}
	case in.WeightsInspected:
		m.ExpertsBytes, m.NonExpertBytes = in.Experts.Bytes, in.NonExpertBytes
	case in.Sidecar.Valid:
		m.ExpertsBytes = in.Sidecar.Layout.TotalBytes()
		m.NonExpertBytes, m.FromConfig = nonExpertFromConfig(cfg), true
	default:
		m.ExpertsBytes = expertsFromConfig(cfg, in.Quant)
		m.NonExpertBytes, m.FromConfig = nonExpertFromConfig(cfg), true
	}
	m.KVBytes = KVBytes(cfg, arch.KVCache, m.ContextLength)
	host := opts.Host
	if host == nil {
		host = hostmem.Read
	}
	info, err := host()
	if err == nil {
		m.AvailableBytes = clampInt64(float64(info.Available))
		m.Note = info.Source
	}
	if m.ExpertsBytes <= 0 || m.KVBytes < 0 || (m.FromConfig && m.NonExpertBytes <= 0) {
		m.Verdict = Unknown
		m.Note = "config.json lacks the dimensions the estimate needs"
		return m
	}
	experts := m.ExpertsBytes
	if m.ExpertCacheBytes > 0 && m.ExpertCacheBytes < experts {
		experts = m.ExpertCacheBytes
	}
	m.WorkingSetBytes = experts + m.NonExpertBytes + m.KVBytes
	if err != nil {
		m.Verdict = Unknown
		m.Note = err.Error()
		return m
	}
	m.Verdict = MemoryVerdict(m.WorkingSetBytes, m.AvailableBytes)
	return m
}

// MemoryVerdict compares a working set with the available memory.
func MemoryVerdict(workingSet, available int64) string {
	switch {
	case available <= 0 || workingSet <= 0:
		return Unknown
	case float64(workingSet) <= FitsRatio*float64(available):
		return Fits
	case workingSet <= available:
		return Tight
	}
	return WontFit
}

func clampInt64(f float64) int64 {
	if f >= math.MaxInt64 || math.IsNaN(f) {
		return math.MaxInt64
	}
	if f < 0 {
		return 0
	}
	return int64(f)
}

// KVBytes is the attention state at contextLength tokens, by cache kind:
//
//   - standard: every layer keeps K and V for every token;
//   - rotating: sliding-window layers keep at most the window;
//   - hybrid_gdn: full-attention layers as standard, Gated DeltaNet layers a
//     constant state (conv window and recurrent matrix, fp32, held twice:
//     kvcache.Hybrid double-buffers them so a failed step changes nothing);
//   - compressed (deepseek_v4): one shared K=V head per layer over the
//     sliding window, plus one compressed entry per ratio tokens, the
//     lightning indexer's f32 keys on CSA layers and the compressors'
//     pending f32 projections (kvsize.Compressed, as kvcache.Compressed).
func KVBytes(cfg *modelconfig.Config, kind registry.KVCacheKind, contextLength int) int64 {
	ctx := float64(contextLength)
	var total float64
	for i := range cfg.NumLayers {
		kvHeads, headDim := cfg.LayerAttention(i)
		perToken := float64(2*kvHeads*headDim) * kvBytesPerValue
		layerKind := cfg.LayerKind(i)
		switch kind {
		case registry.KVStandard:
			total += perToken * ctx
		case registry.KVRotating:
			total += perToken * window(cfg, layerKind, ctx)
		case registry.KVHybridGDN:
			if layerKind == modelconfig.LinearAttention {
				total += gdnStateBytes(cfg)
			} else {
				total += perToken * ctx
			}
		case registry.KVCompressed:
			total += compressedBytes(cfg, i, ctx)
		default:
			return -1
		}
	}
	return clampInt64(total)
}

func window(cfg *modelconfig.Config, layerKind string, ctx float64) float64 {
	if layerKind == modelconfig.SlidingAttention && cfg.SlidingWindow > 0 {
		return math.Min(ctx, float64(cfg.SlidingWindow))
	}
	return ctx
}

func gdnStateBytes(cfg *modelconfig.Config) float64 {
	hk, hv := float64(cfg.LinearNumKeyHeads), float64(cfg.LinearNumValueHeads)
	dk, dv := float64(cfg.LinearKeyHeadDim), float64(cfg.LinearValueHeadDim)
	convDim := 2*hk*dk + hv*dv
	k := float64(cfg.LinearConvKernelDim)
	conv := math.Max(k-1, 0) * convDim * recurrentBytesPerValue
	return 2 * (conv + hv*dk*dv*recurrentBytesPerValue)
}

// compressedBytes is what kvcache.Compressed holds for the layer: the
// cache and this estimate call the same function (kvsize.Compressed).
func compressedBytes(cfg *modelconfig.Config, layer int, ctx float64) float64 {
	tokens := int(math.Min(ctx, math.MaxInt32))
	l := kvsize.CompressedLayer{HeadDim: cfg.HeadDim, Window: cfg.SlidingWindow}
	if l.Window <= 0 {
		l.Window = tokens
	}
	if layer < len(cfg.CompressRatios) && cfg.CompressRatios[layer] > 0 {
		l.Ratio = cfg.CompressRatios[layer]
		if cfg.LayerKind(layer) == modelconfig.CompressedSparse {
			l.Overlap, l.IndexDim = true, cfg.IndexHeadDim
		}
	}
	return float64(kvsize.Compressed([]kvsize.CompressedLayer{l}, tokens, kvBytesPerValue))
}

// bitsPerWeight is the storage cost of one weight of a quant, scales
// included.
func bitsPerWeight(q checkpoint.Quant) float64 {
	switch strings.ToLower(q.Mode) {
	case "bf16", "f16":
		return 16
	case "f32":
		return 32
	case modelconfig.ModeAffine:
		g := float64(q.GroupSize)
		if g <= 0 {
			g = 64
		}
		return float64(q.Bits) + 32/g // a 16-bit scale and bias per group
	case modelconfig.ModeMXFP4, modelconfig.ModeMXFP8:
		return float64(q.Bits) + 8.0/32
	case modelconfig.ModeNVFP4:
		return 4 + 8.0/16
	case modelconfig.ModeFP8:
		return 8 + 32.0/(128*128)
	case "iq2_xxs":
		return 66 * 8 / 256.0
	case "iq2_xs":
		return 74 * 8 / 256.0
	case "iq2_s":
		return 82 * 8 / 256.0
	case "q2_k":
		return 84 * 8 / 256.0
	}
	return 0
}

// expertsFromConfig is the routed-expert size: MoE layers × experts × three
// projections of hidden × expert width, at the experts' storage cost.
func expertsFromConfig(cfg *modelconfig.Config, q checkpoint.Quant) int64 {
	bpw := bitsPerWeight(q)
	params := float64(len(cfg.MoELayers())) * float64(cfg.NumExperts) * 3 * float64(cfg.HiddenSize) * float64(cfg.MoEIntermediateSize)
	return clampInt64(params * bpw / 8)
}

// nonExpertFromConfig approximates every other text-model weight:
// embeddings, the LM head unless tied, attention (or Gated DeltaNet)
// projections, routers, shared experts and dense MLPs. Norms and biases are
// left out (they are tiny).
func nonExpertFromConfig(cfg *modelconfig.Config) int64 {
	h, v := float64(cfg.HiddenSize), float64(cfg.VocabSize)
	params := v * h
	if !cfg.TieWordEmbeddings {
		params += v * h
	}
	for i := range cfg.NumLayers {
		params += attentionParams(cfg, i)
		if cfg.IsMoELayer(i) {
			params += float64(cfg.NumExperts) * h
			shared := float64(cfg.SharedExpertIntermediateSize)
			if shared == 0 && cfg.NumSharedExperts > 0 {
				shared = float64(cfg.NumSharedExperts * cfg.MoEIntermediateSize)
			}
			params += 3 * h * shared
			if cfg.ModelType == "gemma4" {
				// Gemma 4 runs a dense MLP beside the experts.
				params += 3 * h * float64(cfg.IntermediateSize)
			}
		} else {
			params += 3 * h * float64(cfg.IntermediateSize)
		}
	}
	return clampInt64(params * nonExpertBits(cfg) / 8)
}

func attentionParams(cfg *modelconfig.Config, layer int) float64 {
	h := float64(cfg.HiddenSize)
	if cfg.LayerKind(layer) == modelconfig.LinearAttention {
		hk, hv := float64(cfg.LinearNumKeyHeads), float64(cfg.LinearNumValueHeads)
		dk, dv := float64(cfg.LinearKeyHeadDim), float64(cfg.LinearValueHeadDim)
		return h*(2*hk*dk+hv*dv) + h*hv*dv + 2*h*hv + hv*dv*h
	}
	kvHeads, headDim := cfg.LayerAttention(layer)
	nh, hd, kv := float64(cfg.NumHeads), float64(headDim), float64(kvHeads)
	if cfg.QLoraRank > 0 {
		// DeepSeek-V4: low-rank query, one shared K=V head, grouped
		// low-rank output.
		q := h*float64(cfg.QLoraRank) + float64(cfg.QLoraRank)*nh*hd
		o := nh * hd * h
		if cfg.OLoraRank > 0 && cfg.OGroups > 0 {
			o = float64(cfg.OLoraRank)*nh*hd + h*float64(cfg.OGroups*cfg.OLoraRank)
		}
		return q + h*hd + o
	}
	q := h * nh * hd
	if cfg.ModelType == "qwen3_5_moe" {
		q *= 2 // q_proj also emits the per-head output gate
	}
	return q + h*nh*hd + 2*h*kv*hd
}

// nonExpertBits is the storage cost of non-expert weights: MLX quantizes
// them like the experts; the Hugging Face formats (gpt-oss MXFP4, DeepSeek
// FP8) keep them in bf16 or FP8.
func nonExpertBits(cfg *modelconfig.Config) float64 {
	if q := cfg.Quant; q != nil {
		switch {
		case q.Method == "" && q.Bits > 0:
			return bitsPerWeight(checkpoint.Quant{Mode: q.Mode, Bits: q.Bits, GroupSize: q.GroupSize})
		case q.Mode == modelconfig.ModeFP8:
			return 8
		}
	}
	switch strings.ToLower(cfg.DType) {
	case "float32", "fp32":
		return 32
	}
	return 16
}
