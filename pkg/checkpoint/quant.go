package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// quantFromTensors decides the routed-expert quantization from the
// tensors: every main-layer projection's weight (the first expert's, for
// per-expert layouts) is classified, and the quant most projections share
// is reported; a mix (MLX "mixed" recipes give some projections more bits)
// becomes a warning. config.json's quantization block supplies bits and
// group only where the packing alone is ambiguous, and a disagreement with
// the tensors becomes a warning.
func quantFromTensors(cfg *modelconfig.Config, hs *safetensors.Headers, main map[int]*layerExperts, warnings *[]string) Quant {
	type found struct {
		q      Quant
		count  int
		module string
	}
	var order []string
	byQuant := map[string]*found{}
	var disagreement string
	for _, name := range hs.Names() {
		k, t := Classify(cfg.ModelType, name)
		if k != RoutedExpert || t.MTP || (t.Part != Weight && t.Part != Blocks) || (!t.Stacked() && t.Expert != 0) {
			continue
		}
		if _, ok := main[t.Layer]; !ok {
			continue
		}
		e, _ := hs.Lookup(name)
		q, note := quantOf(cfg, hs, e, t)
		if note != "" && disagreement == "" {
			disagreement = note
		}
		key := q.String()
		f := byQuant[key]
		if f == nil {
			f = &found{q: q, module: t.Module}
			byQuant[key] = f
			order = append(order, key)
		}
		f.count++
	}
	if len(order) == 0 {
		return Quant{Mode: "unknown", Source: "tensors"}
	}
	best := byQuant[order[0]]
	for _, k := range order[1:] {
		if byQuant[k].count > best.count {
			best = byQuant[k]
		}
	}
	if len(order) > 1 {
		parts := make([]string, len(order))
		for i, k := range order {
			parts[i] = fmt.Sprintf("%s ×%d (e.g. %s)", k, byQuant[k].count, byQuant[k].module)
		}
		*warnings = append(*warnings, fmt.Sprintf("routed-expert projections are stored in more than one format: %s; reporting the most common", strings.Join(parts, ", ")))
	}
	if disagreement != "" {
		*warnings = append(*warnings, disagreement)
	}
	best.q.Source = "tensors"
	return best.q
}

// quantOf classifies one routed-expert weight (or blocks) tensor; note
// reports a disagreement with config.json.
func quantOf(cfg *modelconfig.Config, hs *safetensors.Headers, weight safetensors.Entry, et ExpertTensor) (Quant, string) {
	companion := func(part Part) (safetensors.Entry, bool) {
		for _, suffix := range []string{"." + string(part), "_" + string(part)} {
			if e, ok := hs.Lookup(et.Module + suffix); ok {
				return e, true
			}
		}
		return safetensors.Entry{}, false
	}
	mq := cfg.Quant.ForModule(et.Module)
	var q Quant
	switch {
	case et.Part == Blocks:
		q = Quant{Mode: modelconfig.ModeMXFP4, Bits: 4, GroupSize: 32}
	case weight.DType == safetensors.BF16:
		q = Quant{Mode: "bf16", Bits: 16}
	case weight.DType == safetensors.F16:
		q = Quant{Mode: "f16", Bits: 16}
	case weight.DType == safetensors.F32:
		q = Quant{Mode: "f32", Bits: 32}
	case weight.DType == safetensors.F8E4M3 || weight.DType == safetensors.F8E5M2:
		q = Quant{Mode: modelconfig.ModeFP8, Bits: 8, GroupSize: 128}
	case weight.DType == safetensors.I8 || weight.DType == safetensors.U8:
		// DeepSeek native FP4 experts: e2m1 pairs with an e8m0 scale per 32.
		q = Quant{Mode: modelconfig.ModeMXFP4, Bits: 4, GroupSize: 32}
	case weight.DType == safetensors.U32:
		q = mlxQuant(cfg, &weight, et, mq, companion)
	default:
		return Quant{Mode: "unknown"}, fmt.Sprintf("routed-expert tensor %q has dtype %s, which mach does not recognise", weight.Name, weight.DType)
	}
	// DeepSeek-V4's quantization_config (fp8) describes its attention and
	// shared experts; its routed experts are FP4 (expert_dtype), as found.
	deepseekFP4 := cfg.ModelType == "deepseek_v4" && mq.Mode == modelconfig.ModeFP8 && q.Mode == modelconfig.ModeMXFP4
	if mq.Quantized && q.Quantized() && cfg.Quant != nil && !deepseekFP4 && (mq.Bits != q.Bits || !sameMode(mq.Mode, q.Mode)) {
		return q, fmt.Sprintf("%s %s says %s %d-bit for %s, but the tensors hold %s; using the tensors",
			cfg.Name(), cfg.Quant.Key, mq.Mode, mq.Bits, et.Module, q)
	}
	return q, ""
}

func sameMode(a, b string) bool { return strings.EqualFold(a, b) }

// mlxQuant reads an MLX-quantized weight: U32 packed codes with scales
// (and biases for affine).
func mlxQuant(cfg *modelconfig.Config, weight *safetensors.Entry, et ExpertTensor, mq modelconfig.ModuleQuant, companion func(Part) (safetensors.Entry, bool)) Quant {
	scales, hasScales := companion(Scales)
	_, hasBiases := companion(Biases)
	_, in := dims(cfg, et.Proj)
	packed := weight.Shape[len(weight.Shape)-1]
	bits := int64(mq.Bits)
	if in > 0 && packed > 0 {
		bits = packed * 32 / in
	}
	group := int64(mq.GroupSize)
	if hasScales && in > 0 {
		if g := scales.Shape[len(scales.Shape)-1]; g > 0 && in%g == 0 {
			group = in / g
		}
	}
	mode := mq.Mode
	switch {
	case hasScales && hasBiases:
		mode = modelconfig.ModeAffine
	case hasScales && scales.DType == safetensors.U8 && (mode == "" || mode == modelconfig.ModeAffine):
		// fp modes have e8m0/e4m3 byte scales and no biases.
		switch group {
		case 16:
			mode = modelconfig.ModeNVFP4
		default:
			mode = modelconfig.ModeMXFP4
			if bits == 8 {
				mode = modelconfig.ModeMXFP8
			}
		}
	case !hasScales:
		return Quant{Mode: "unknown", Bits: int(bits)}
	}
	if mode == "" {
		mode = modelconfig.ModeAffine
	}
	return Quant{Mode: mode, Bits: int(bits), GroupSize: int(group)}
}

// quantFromConfig is the routed-expert quant when only config.json is
// known.
func quantFromConfig(cfg *modelconfig.Config) Quant {
	if q := cfg.Quant; q != nil {
		m := ModuleQuantOfExperts(cfg)
		switch {
		case q.Mode == modelconfig.ModeFP8 && cfg.ModelType == "deepseek_v4":
			// DeepSeek-V4 ships FP8 attention and shared experts with FP4
			// (e2m1 + e8m0 per 32) routed experts.
			return Quant{Mode: modelconfig.ModeMXFP4, Bits: 4, GroupSize: 32, Source: "config"}
		case !m.Quantized:
			// Experts excluded from quantization: fall through to dtype.
		default:
			return Quant{Mode: m.Mode, Bits: m.Bits, GroupSize: m.GroupSize, Source: "config"}
		}
	}
	switch strings.ToLower(cfg.DType) {
	case "bfloat16", "bf16":
		return Quant{Mode: "bf16", Bits: 16, Source: "dtype"}
	case "float16", "fp16", "half":
		return Quant{Mode: "f16", Bits: 16, Source: "dtype"}
	case "float32", "fp32", "float":
		return Quant{Mode: "f32", Bits: 32, Source: "dtype"}
	}
	return Quant{Mode: "unknown", Source: "config"}
}

// ModuleQuantOfExperts returns the quantization config.json assigns to the
// routed experts: an MLX per-module override naming a routed-expert module
// wins over the defaults.
func ModuleQuantOfExperts(cfg *modelconfig.Config) modelconfig.ModuleQuant {
	q := cfg.Quant
	if q == nil {
		return modelconfig.ModuleQuant{}
	}
	for _, path := range sortedOverrideKeys(q) {
		for _, part := range []string{".weight", ""} {
			if k, _ := Classify(cfg.ModelType, path+part); k == RoutedExpert {
				return q.Overrides[path]
			}
		}
	}
	return q.ForModule("")
}

func sortedOverrideKeys(q *modelconfig.Quantization) []string {
	keys := make([]string, 0, len(q.Overrides))
	for k := range q.Overrides {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// finish settles layout and quant once tensors and sidecar are known.
func (in *Inspection) finish() {
	if in.Sidecar.Valid {
		if in.Layout == PerExpert || in.Remote {
			in.Layout = Engine
		}
		sq := in.Sidecar.Layout.Quant
		if isGGUFMode(sq.Mode) || in.Quant.Mode == "" || in.Quant.Mode == "unknown" {
			in.Quant = Quant{Mode: strings.ToLower(sq.Mode), Bits: sq.Bits, GroupSize: sq.GroupSize, Source: "sidecar"}
		}
	}
	if in.Quant.Mode == "" {
		in.Quant = quantFromConfig(in.Config)
	}
	if len(in.GGUFFiles) > 0 && !in.Quant.IsGGUF2Bit() {
		in.warn("%d *.gguf file(s) in %s are not described by an expert sidecar; mach does not inspect them", len(in.GGUFFiles), in.Dir)
	}
}

func isGGUFMode(m string) bool { return sidecar.IsGGUFType(strings.ToUpper(m)) }

// probeSidecar reads and checks expert_sidecar/ in dir.
func (in *Inspection) probeSidecar(dir string, verify bool) {
	p := filepath.Join(dir, sidecar.LayoutName)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return
	}
	in.Sidecar.Present = true
	l, err := sidecar.ReadFile(p)
	if err != nil {
		in.Sidecar.Err = err
		in.warn("%v", err)
		return
	}
	in.Sidecar.Layout = l
	if err := checkSidecarAgainstConfig(l, in.Config); err != nil {
		in.Sidecar.Err = fmt.Errorf("%s: %w", p, err)
		in.warn("%v", in.Sidecar.Err)
		return
	}
	if verify {
		if err := l.Verify(dir); err != nil {
			in.Sidecar.Err = err
			in.warn("%v", err)
			return
		}
		in.Sidecar.Verified = true
	}
	if in.WeightsInspected && len(in.Experts.PerLayer) > 0 {
		for _, ly := range l.Layers {
			if n, ok := in.Experts.PerLayer[ly.Index]; ok && n != l.LayerExperts(ly) {
				in.Sidecar.Err = fault.Mark(fmt.Errorf("%s: %w: layer %d holds %d experts in the sidecar but %d in the safetensors", p, sidecar.ErrInvalid, ly.Index, l.LayerExperts(ly), n), fault.ErrIO)
				in.warn("%v", in.Sidecar.Err)
				return
			}
		}
	}
	in.Sidecar.Valid = true
}

// VerifySidecarChecksums reads the layer files of a valid local sidecar
// and checks every expert's checksum (mach check --verify). A mismatch, or
// a layout without checksums, makes the sidecar invalid as if the probe
// had found it so; only cancellation is returned as an error.
func (in *Inspection) VerifySidecarChecksums(ctx context.Context, progress sidecar.Progress) error {
	if !in.Sidecar.Valid || !in.Sidecar.Verified || in.Remote {
		return nil
	}
	err := in.Sidecar.Layout.VerifyChecksums(ctx, filepath.Join(in.Dir, sidecar.DirName), progress)
	switch {
	case err == nil:
		in.Sidecar.Checksummed = true
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	in.Sidecar.Valid, in.Sidecar.Err = false, err
	in.warn("%v", err)
	if in.Layout == Engine {
		in.Layout = PerExpert // engine = per-expert tensors + a valid sidecar
	}
	return nil
}

// checkSidecarAgainstConfig checks that a layout covers exactly the
// config's MoE layers with its expert count.
func checkSidecarAgainstConfig(l *sidecar.Layout, cfg *modelconfig.Config) error {
	if l.ModelType != "" && cfg.ModelType != "" && l.ModelType != cfg.ModelType {
		return fault.Mark(fmt.Errorf("%w: layout.json is for model_type %q, config.json says %q", sidecar.ErrInvalid, l.ModelType, cfg.ModelType), fault.ErrIO)
	}
	moe := cfg.MoELayers()
	for _, ly := range l.Layers {
		if cfg.NumLayers > 0 && !cfg.IsMoELayer(ly.Index) {
			return fault.Mark(fmt.Errorf("%w: layout.json declares layer %d, which is not a MoE layer of this model (%d layers)", sidecar.ErrInvalid, ly.Index, cfg.NumLayers), fault.ErrIO)
		}
	}
	for _, i := range moe {
		if _, ok := l.Layer(i); !ok {
			return fault.Mark(fmt.Errorf("%w: layout.json does not cover MoE layer %d; re-run mach-export-sidecar", sidecar.ErrIncomplete, i), fault.ErrIO)
		}
	}
	if cfg.ExpertsPerLayer != nil {
		for _, ly := range l.Layers {
			if n, want := l.LayerExperts(ly), cfg.LayerExperts(ly.Index); n != want {
				return fault.Mark(fmt.Errorf("%w: layout.json has %d experts in layer %d, config.json's %s %d", sidecar.ErrInvalid, n, ly.Index, modelconfig.ExpertsPerLayerKey, want), fault.ErrIO)
			}
		}
	} else if cfg.NumExperts > 0 && l.NumExperts != cfg.NumExperts {
		return fault.Mark(fmt.Errorf("%w: layout.json has num_experts %d, config.json %d", sidecar.ErrInvalid, l.NumExperts, cfg.NumExperts), fault.ErrIO)
	}
	return nil
}
