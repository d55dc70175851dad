// Package checkpoint inspects a checkpoint without loading its weights:
// which tensors are routed experts and how they are laid out (stacked, per
// expert, or the sliced engine layout with an expert sidecar), how the
// routed experts are quantized, whether the expert sidecar and a draft
// directory are usable, and how many bytes experts and the rest take. It
// reads config.json, the safetensors headers (bounded reads, validated
// against the file sizes) and expert_sidecar/layout.json; it never maps or
// reads tensor data.
//
// The naming knowledge (Classify) is shared with the loader and mach-prune.
package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// Layout is how routed experts are stored.
type Layout string

// The layouts.
const (
	// Stacked: one tensor per projection (or fused gate_up) holds every
	// expert of a layer along axis 0.
	Stacked Layout = "stacked"
	// PerExpert: one tensor per expert and projection.
	PerExpert Layout = "per_expert"
	// Engine: per-expert tensors plus a valid expert_sidecar/ for direct
	// pread streaming (what mach-prune and mach-export-sidecar produce).
	Engine Layout = "engine"
	// Unknown: the weights were not inspected (config-only) or hold no
	// routed-expert tensors mach recognises.
	Unknown Layout = "unknown"
)

// ErrMismatch is wrapped when the tensors disagree with config.json.
var ErrMismatch = errors.New("checkpoint tensors disagree with config.json")

// Quant describes how routed experts are stored.
type Quant struct {
	// Mode is bf16, f16 or f32 for unquantized experts; affine, mxfp4,
	// nvfp4, mxfp8 or fp8; a GGUF type in lower case (iq2_xxs, iq2_xs,
	// q2_k) for GGUF experts; or "unknown".
	Mode string
	// Bits per weight (16 for bf16, 2 for the IQ2 and Q2_K types); 0 when
	// unknown.
	Bits int
	// GroupSize is the quantization group (0 when not grouped).
	GroupSize int
	// Source says where the answer came from: "tensors", "sidecar",
	// "config" or "dtype".
	Source string
}

// String renders the quant the way the seed's report does: "mxfp4
// (4-bit)", "affine (4-bit, group 64)", "bf16 (16-bit)".
func (q Quant) String() string {
	switch {
	case q.Mode == "" || q.Mode == "unknown":
		return "unknown"
	case q.Bits == 0:
		return q.Mode
	case q.Mode == modelconfig.ModeAffine && q.GroupSize > 0:
		return fmt.Sprintf("%s (%d-bit, group %d)", q.Mode, q.Bits, q.GroupSize)
	}
	return fmt.Sprintf("%s (%d-bit)", q.Mode, q.Bits)
}

// Quantized reports whether the experts are stored below 16 bits.
func (q Quant) Quantized() bool {
	switch q.Mode {
	case "bf16", "f16", "f32", "", "unknown":
		return false
	}
	return true
}

// IsGGUF2Bit reports whether experts are GGUF 2-bit blocks.
func (q Quant) IsGGUF2Bit() bool {
	switch q.Mode {
	case "iq2_xxs", "iq2_xs", "iq2_s", "q2_k":
		return true
	}
	return false
}

// Experts summarizes the routed-expert tensors.
type Experts struct {
	// Layers are the main-model layers holding routed experts, ascending.
	Layers []int
	// PerLayer is the expert count of each of those layers.
	PerLayer map[int]int
	// MTPLayers hold routed experts of the MTP head.
	MTPLayers []int
	// Bytes is the size of every routed-expert tensor (MTP included).
	Bytes int64
}

// SidecarProbe is what was found in expert_sidecar/.
type SidecarProbe struct {
	// Present: expert_sidecar/layout.json exists (or was fetched).
	Present bool
	// Valid: it parsed, matches config.json and, when Verified, every
	// declared layer file exists with its declared size.
	Valid bool
	// Verified: the layer files were checked on disk (false for a remote
	// checkpoint, whose layer files are never fetched).
	Verified bool
	// Checksummed: every expert's checksum was verified too
	// (Options.VerifyChecksums).
	Checksummed bool
	Layout      *sidecar.Layout
	// Err says why a present sidecar is not valid.
	Err error
}

// DraftProbe is the speculative-decoding draft directory found.
type DraftProbe struct {
	// Dir is the directory probed ("" when none was given or found).
	Dir string
	// Explicit: Dir came from --draft-dir rather than discovery.
	Explicit bool
	Usable   bool
	// Reason says why Dir is not usable.
	Reason string
}

// Inspection is everything known about a checkpoint before loading it.
type Inspection struct {
	// Dir is the local directory inspected; for a remote checkpoint it is
	// the cache directory holding the fetched config.
	Dir    string
	Config *modelconfig.Config
	// Remote: only config.json (and layout.json) were fetched from a hub.
	Remote bool
	// WeightsInspected: safetensors headers were read. False for a remote
	// checkpoint or a directory without weights.
	WeightsInspected bool
	Layout           Layout
	Quant            Quant
	Experts          Experts
	// NonExpertBytes counts every other text-model tensor; SkippedBytes the
	// vision/audio towers a text engine never loads.
	NonExpertBytes int64
	SkippedBytes   int64
	// MTPTensors: the checkpoint holds an MTP head (mtp.*).
	MTPTensors bool
	// GGUFFiles are *.gguf files in the directory.
	GGUFFiles []string
	Sidecar   SidecarProbe
	Draft     DraftProbe
	// Warnings are non-fatal findings a report should show.
	Warnings []string
}

// Options tune an inspection.
type Options struct {
	// DraftDir is --draft-dir; empty means discover (DraftCandidates).
	DraftDir string
}

// Inspect inspects the checkpoint in dir, whose config has been loaded.
func Inspect(dir string, cfg *modelconfig.Config, opts Options) (*Inspection, error) {
	in := &Inspection{Dir: dir, Config: cfg, Layout: Unknown}
	in.GGUFFiles, _ = filepath.Glob(filepath.Join(dir, "*.gguf"))
	if hasSafetensors(dir) {
		hs, err := safetensors.ReadHeaders(dir)
		if err != nil {
			return nil, err
		}
		if err := in.scan(hs); err != nil {
			return nil, err
		}
		in.WeightsInspected = true
	} else {
		in.warn("no safetensors weights in %s: layout unknown, sizes estimated from config.json", dir)
	}
	in.probeSidecar(filepath.Join(dir, sidecar.DirName), true)
	in.finish()
	in.Draft = probeDraft(dir, opts.DraftDir)
	return in, nil
}

// InspectConfig builds the inspection of a checkpoint known only by its
// config (a remote repo): layout and quant come from the config and the
// optional, unverified sidecar layout. draftDir is a local --draft-dir.
func InspectConfig(dir string, cfg *modelconfig.Config, layout *sidecar.Layout, draftDir string) *Inspection {
	in := &Inspection{Dir: dir, Config: cfg, Layout: Unknown, Remote: true}
	if layout != nil {
		in.Sidecar = SidecarProbe{Present: true, Layout: layout}
		if err := checkSidecarAgainstConfig(layout, cfg); err != nil {
			in.Sidecar.Err = err
			in.warn("%v", err)
		} else {
			in.Sidecar.Valid = true
		}
	}
	in.finish()
	if draftDir != "" {
		in.Draft = probeDraft("", draftDir)
	}
	return in
}

func (in *Inspection) warn(format string, args ...any) {
	in.Warnings = append(in.Warnings, fmt.Sprintf(format, args...))
}

func hasSafetensors(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, safetensors.IndexName)); err == nil {
		return true
	}
	m, _ := filepath.Glob(filepath.Join(dir, "model*.safetensors"))
	return len(m) > 0
}

// layerExperts gathers one layer's routed-expert tensors.
type layerExperts struct {
	stacked   []stackedTensor
	perExpert map[int]map[Proj]bool
	projs     map[Proj]bool
}

type stackedTensor struct {
	name  string
	info  safetensors.TensorInfo
	et    ExpertTensor
	count int64
}

func (in *Inspection) scan(hs *safetensors.Headers) error {
	cfg := in.Config
	main := map[int]*layerExperts{}
	mtp := map[int]bool{}
	var all []struct {
		e  safetensors.Entry
		et ExpertTensor
	}
	for _, name := range hs.Names() {
		e, _ := hs.Lookup(name)
		kind, et := Classify(cfg.ModelType, name)
		switch kind {
		case Skipped:
			in.SkippedBytes += e.Size()
			continue
		case Other:
			in.NonExpertBytes += e.Size()
			if strings.HasPrefix(name, "mtp.") || strings.Contains(name, ".mtp.") {
				in.MTPTensors = true
			}
			continue
		}
		in.Experts.Bytes += e.Size()
		all = append(all, struct {
			e  safetensors.Entry
			et ExpertTensor
		}{e, et})
		if et.MTP {
			mtp[et.Layer] = true
			in.MTPTensors = true
			continue
		}
		if cfg.NumLayers > 0 && et.Layer >= cfg.NumLayers {
			return mismatch(e, "tensor %q is in layer %d, but num_hidden_layers is %d", name, et.Layer, cfg.NumLayers)
		}
		if !cfg.IsMoELayer(et.Layer) && cfg.NumExperts > 0 {
			return mismatch(e, "tensor %q is a routed expert of layer %d, which config.json does not make a MoE layer (check mlp_only_layers, decoder_sparse_step, first_k_dense_replace)", name, et.Layer)
		}
		le := main[et.Layer]
		if le == nil {
			le = &layerExperts{perExpert: map[int]map[Proj]bool{}, projs: map[Proj]bool{}}
			main[et.Layer] = le
		}
		if et.Part == Weight || et.Part == Blocks {
			le.projs[et.Proj] = true
		}
		if et.Stacked() {
			if len(e.Shape) < 2 {
				return mismatch(e, "stacked expert tensor %q has shape %v; want the expert axis first", name, e.Shape)
			}
			le.stacked = append(le.stacked, stackedTensor{name: name, info: e.TensorInfo, et: et, count: e.Shape[0]})
		} else {
			m := le.perExpert[et.Expert]
			if m == nil {
				m = map[Proj]bool{}
				le.perExpert[et.Expert] = m
			}
			if et.Part == Weight {
				m[et.Proj] = true
			}
		}
	}
	for l := range mtp {
		in.Experts.MTPLayers = append(in.Experts.MTPLayers, l)
	}
	slices.Sort(in.Experts.MTPLayers)
	if len(main) == 0 {
		if cfg.NumExperts > 0 {
			in.warn("no routed-expert tensors recognised in %s (expected names like model.layers.0.mlp.experts.0.gate_proj.weight or …mlp.switch_mlp.gate_proj.weight)", hs.Dir)
		}
		return nil
	}
	if err := in.checkLayers(main, hs); err != nil {
		return err
	}
	for _, x := range all {
		if err := checkShape(cfg, x.e, x.et); err != nil {
			return err
		}
	}
	in.Quant = quantFromTensors(cfg, hs, main, &in.Warnings)
	return nil
}

func mismatch(e safetensors.Entry, format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%s: %w: %s", e.File, ErrMismatch, fmt.Sprintf(format, args...)), fault.ErrIO)
}

// checkLayers checks expert counts and layer coverage against the config
// and decides the layout.
func (in *Inspection) checkLayers(main map[int]*layerExperts, hs *safetensors.Headers) error {
	cfg := in.Config
	in.Experts.PerLayer = map[int]int{}
	var nStacked, nPer int
	for _, l := range sortedKeys(main) {
		le := main[l]
		in.Experts.Layers = append(in.Experts.Layers, l)
		if len(le.stacked) > 0 && len(le.perExpert) > 0 {
			return fault.Mark(fmt.Errorf("%s: %w: layer %d mixes stacked (%s) and per-expert tensors", hs.Dir, ErrMismatch, l, le.stacked[0].name), fault.ErrIO)
		}
		var count int
		if len(le.stacked) > 0 {
			nStacked++
			count = int(le.stacked[0].count)
			for _, s := range le.stacked[1:] {
				if int(s.count) != count {
					return fault.Mark(fmt.Errorf("%s: %w: layer %d: %s stacks %d experts but %s stacks %d", hs.Dir, ErrMismatch, l, le.stacked[0].name, count, s.name, s.count), fault.ErrIO)
				}
			}
		} else {
			nPer++
			count = len(le.perExpert)
			for e := range count {
				projs, ok := le.perExpert[e]
				if !ok {
					return fault.Mark(fmt.Errorf("%s: %w: layer %d has %d experts but expert %d is missing (indices must run 0..%d)", hs.Dir, ErrMismatch, l, count, e, count-1), fault.ErrIO)
				}
				if p := missingProj(projs); p != "" {
					return fault.Mark(fmt.Errorf("%s: %w: layer %d expert %d has no %s projection weight", hs.Dir, ErrMismatch, l, e, p), fault.ErrIO)
				}
			}
		}
		if p := missingProj(le.projs); p != "" {
			return fault.Mark(fmt.Errorf("%s: %w: layer %d has no %s projection among its routed-expert tensors", hs.Dir, ErrMismatch, l, p), fault.ErrIO)
		}
		if want := cfg.LayerExperts(l); cfg.NumExperts > 0 && count != want {
			key := "num_experts"
			if cfg.ExpertsPerLayer != nil {
				key = modelconfig.ExpertsPerLayerKey
			}
			return fault.Mark(fmt.Errorf("%s: %w: layer %d holds %d routed experts, but %s says %d (%s); a pruned checkpoint must carry its pruned config.json", hs.Dir, ErrMismatch, l, count, cfg.Name(), want, key), fault.ErrIO)
		}
		in.Experts.PerLayer[l] = count
	}
	for _, l := range cfg.MoELayers() {
		if _, ok := main[l]; !ok {
			return fault.Mark(fmt.Errorf("%s: %w: %s makes layer %d a MoE layer, but no routed-expert tensors of layer %d were found", hs.Dir, ErrMismatch, cfg.Name(), l, l), fault.ErrIO)
		}
	}
	switch {
	case nStacked > 0 && nPer > 0:
		return fault.Mark(fmt.Errorf("%s: %w: some layers stack their experts and others store them per expert", hs.Dir, ErrMismatch), fault.ErrIO)
	case nStacked > 0:
		in.Layout = Stacked
	default:
		in.Layout = PerExpert
	}
	return nil
}

// missingProj names a projection a layer lacks: down, and gate+up or the
// fused gate_up.
func missingProj(p map[Proj]bool) string {
	switch {
	case !p[Down]:
		return "down"
	case p[GateUp]:
		return ""
	case !p[Gate]:
		return "gate"
	case !p[Up]:
		return "up"
	}
	return ""
}

func sortedKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// dims returns the (out, in) sizes a projection has per the config; 0 when
// the config does not say.
func dims(cfg *modelconfig.Config, p Proj) (out, in int64) {
	h, i := int64(cfg.HiddenSize), int64(cfg.MoEIntermediateSize)
	switch p {
	case Gate, Up:
		return i, h
	case GateUp:
		return 2 * i, h
	case Down:
		return h, i
	}
	return 0, 0
}

// checkShape compares an expert tensor's shape with the config's hidden
// and expert widths. Quantized tensors are checked on the dimensions their
// packing keeps.
func checkShape(cfg *modelconfig.Config, e safetensors.Entry, et ExpertTensor) error {
	out, in := dims(cfg, et.Proj)
	if out == 0 || in == 0 {
		return nil
	}
	shape := e.Shape
	if et.Stacked() {
		shape = shape[1:]
	}
	bad := func(want string) error {
		return mismatch(e, "tensor %q has shape %v, but %s implies %s (hidden_size %d, moe_intermediate_size %d)",
			e.Name, e.Shape, cfg.Name(), want, cfg.HiddenSize, cfg.MoEIntermediateSize)
	}
	switch et.Part {
	case Weight:
		if len(shape) != 2 {
			return bad(fmt.Sprintf("a 2-D [%d, %d] matrix per expert", out, in))
		}
		r, c := shape[0], shape[1]
		switch e.DType {
		case safetensors.BF16, safetensors.F16, safetensors.F32, safetensors.F8E4M3, safetensors.F8E5M2:
			if et.Transposed {
				r, c = c, r
			}
			if r != out || c != in {
				return bad(fmt.Sprintf("[%d, %d] per expert", out, in))
			}
		case safetensors.U32:
			// MLX packs `in` values of b bits into in·b/32 words.
			if r != out || c == 0 || (c*32)%in != 0 || !validBits((c*32)/in) {
				return bad(fmt.Sprintf("[%d, %d·bits/32] per expert (MLX packed)", out, in))
			}
		case safetensors.I8, safetensors.U8:
			// DeepSeek FP4: two e2m1 codes per byte.
			if r != out || c*2 != in {
				return bad(fmt.Sprintf("[%d, %d] bytes per expert (FP4, two values a byte)", out, in/2))
			}
		}
	case Blocks:
		// gpt-oss MXFP4: [E, out, in/32, 16].
		if len(shape) != 3 || shape[0] != out || shape[1]*32 != in || shape[2] != 16 {
			return bad(fmt.Sprintf("[%d, %d, 16] MXFP4 blocks per expert", out, in/32))
		}
	case Bias:
		if len(shape) != 1 || shape[0] != out {
			return bad(fmt.Sprintf("a [%d] bias per expert", out))
		}
	}
	return nil
}

func validBits(b int64) bool {
	switch b {
	case 2, 3, 4, 5, 6, 8:
		return true
	}
	return false
}

// DraftCandidates are the directories probed for a speculative-decoding
// draft when --draft-dir is not given, in order.
func DraftCandidates(dir string) []string {
	clean := filepath.Clean(dir)
	return []string{
		filepath.Join(clean, "draft"),
		filepath.Join(clean, "dflash_draft"),
		filepath.Join(clean, "eagle3_draft"),
		clean + "-draft",
	}
}

func probeDraft(dir, explicit string) DraftProbe {
	if explicit != "" {
		p := DraftProbe{Dir: explicit, Explicit: true}
		p.Usable, p.Reason = usableDraft(explicit)
		return p
	}
	if dir == "" {
		return DraftProbe{}
	}
	for _, c := range DraftCandidates(dir) {
		if st, err := os.Stat(c); err != nil || !st.IsDir() {
			continue
		}
		p := DraftProbe{Dir: c}
		p.Usable, p.Reason = usableDraft(c)
		return p
	}
	return DraftProbe{}
}

// usableDraft checks that a draft directory has a readable config.json
// with a model_type and valid safetensors weights.
func usableDraft(dir string) (bool, string) {
	st, err := os.Stat(dir)
	if err != nil {
		return false, fmt.Sprintf("draft directory %s: %v", dir, errors.Unwrap(err))
	}
	if !st.IsDir() {
		return false, fmt.Sprintf("draft directory %s is not a directory", dir)
	}
	cfg, err := modelconfig.Load(dir)
	if err != nil {
		return false, fmt.Sprintf("draft %v", err)
	}
	if cfg.ModelType == "" {
		return false, fmt.Sprintf("draft %s has no model_type", cfg.Name())
	}
	if !hasSafetensors(dir) {
		return false, fmt.Sprintf("draft directory %s has no model*.safetensors weights", dir)
	}
	if _, err := safetensors.ReadHeaders(dir); err != nil {
		return false, fmt.Sprintf("draft weights: %v", err)
	}
	return true, ""
}
