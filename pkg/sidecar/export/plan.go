// Package export writes an expert sidecar (package sidecar) from a
// checkpoint: one layer_XX.bin per MoE layer with every routed expert's
// tensors packed into one 4 KiB-aligned slab, and layout.json last. It
// reads every layout checkpoint.Classify knows (per-expert tensors, MLX
// stacked switch_mlp, transformers fused gate_up_proj, gpt-oss blocks) from
// the memory-mapped safetensors and copies the expert bytes unchanged, or,
// with Options.Bits, quantizes bf16/f16/f32 experts to MLX affine on the
// way (pkg/quant, MLX's quantizer).
package export

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// componentAlign aligns each component inside a slab (a cache line, so the
// kernels' vector loads of a freshly read expert start aligned).
const componentAlign = 64

// ErrMismatch is wrapped when the checkpoint disagrees with the options or
// with itself (expert counts, formats that differ between layers).
var ErrMismatch = errors.New("cannot export expert sidecar")

func mismatch(format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%w: %s", ErrMismatch, fmt.Sprintf(format, args...)), fault.ErrUnsupported)
}

func usage(format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%w: %s", ErrMismatch, fmt.Sprintf(format, args...)), fault.ErrUsage)
}

// source is where one component of every expert of a layer comes from:
// one stacked tensor ([E, ...]) or one tensor per expert.
type source struct {
	name string // component name, "<proj>.<part>"
	proj checkpoint.Proj
	part checkpoint.Part
	// stacked is the tensor holding every expert; perExpert[e] the tensor
	// of expert e when not stacked.
	stacked   *safetensors.Entry
	perExpert []*safetensors.Entry
	// dtype and shape of one expert's tensor.
	dtype       safetensors.DType
	shape       []int64
	transposed  bool
	interleaved bool
}

func (s *source) tensorName(e int) string {
	if s.stacked != nil {
		return s.stacked.Name
	}
	return s.perExpert[e].Name
}

// layerPlan is one MoE layer's sources, in component order.
type layerPlan struct {
	index   int
	experts int
	sources []*source
	file    string
}

// componentPlan says how one output component is produced from a source:
// copied, or (for a quantized weight) one of codes, scales or biases.
type componentPlan struct {
	sidecar.Component
	src int // index into layerPlan.sources
	// quantPart is "" for a copy, else "weight", "scales" or "biases" of
	// the affine quantization of the source.
	quantPart string
}

// plan is the whole export: the layout (without checksums) and, per
// layer, where each component's bytes come from.
type plan struct {
	layout *sidecar.Layout
	layers []*layerPlan
	comps  []componentPlan
	// quantize: the weights are quantized to layout.Quant on the way.
	quantize bool
	// scaleType of quantized weights' scales and biases.
	scaleType quant.ScaleType
}

var projOrder = map[checkpoint.Proj]int{checkpoint.Gate: 0, checkpoint.Up: 1, checkpoint.GateUp: 2, checkpoint.Down: 3}

var partOrder = map[checkpoint.Part]int{
	checkpoint.Weight: 0, checkpoint.Blocks: 1, checkpoint.Scales: 2, checkpoint.Biases: 3,
	checkpoint.Bias: 4, checkpoint.Scale: 5, checkpoint.WeightScaleInv: 6,
}

func componentName(p checkpoint.Proj, part checkpoint.Part) string {
	return string(p) + "_proj." + string(part)
}

// collect groups the routed-expert tensors of hs by MoE layer.
func collect(cfg *modelconfig.Config, hs *safetensors.Headers) (map[int]map[string]*source, error) {
	layers := map[int]map[string]*source{}
	for _, name := range hs.Names() {
		kind, t := checkpoint.Classify(cfg.ModelType, name)
		if kind != checkpoint.RoutedExpert || t.MTP {
			continue
		}
		e, _ := hs.Lookup(name)
		srcs := layers[t.Layer]
		if srcs == nil {
			srcs = map[string]*source{}
			layers[t.Layer] = srcs
		}
		cname := componentName(t.Proj, t.Part)
		s := srcs[cname]
		if s == nil {
			s = &source{name: cname, proj: t.Proj, part: t.Part, transposed: t.Transposed, interleaved: t.Interleaved}
			srcs[cname] = s
		}
		entry := e
		if t.Stacked() {
			if s.stacked != nil || s.perExpert != nil || len(e.Shape) < 2 {
				return nil, mismatch("%s: layer %d %s is stored twice or has shape %v", hs.Dir, t.Layer, cname, e.Shape)
			}
			s.stacked = &entry
			s.dtype, s.shape = e.DType, append([]int64(nil), e.Shape[1:]...)
			continue
		}
		if s.stacked != nil {
			return nil, mismatch("%s: layer %d %s is stored both stacked and per expert", hs.Dir, t.Layer, cname)
		}
		for len(s.perExpert) <= t.Expert {
			s.perExpert = append(s.perExpert, nil)
		}
		if s.perExpert[t.Expert] != nil {
			return nil, mismatch("%s: layer %d expert %d %s is stored twice", hs.Dir, t.Layer, t.Expert, cname)
		}
		s.perExpert[t.Expert] = &entry
	}
	return layers, nil
}

// experts checks that every source of a layer covers the same experts with
// one dtype and shape, and returns their count.
func (lp *layerPlan) check(dir string) error {
	for _, s := range lp.sources {
		n := len(s.perExpert)
		if s.stacked != nil {
			n = int(s.stacked.Shape[0])
		}
		if lp.experts == 0 {
			lp.experts = n
		}
		if n != lp.experts || n == 0 {
			return mismatch("%s: layer %d: %s holds %d experts, other projections %d", dir, lp.index, s.name, n, lp.experts)
		}
		if s.stacked != nil {
			continue
		}
		for e, x := range s.perExpert {
			if x == nil {
				return mismatch("%s: layer %d: expert %d has no %s tensor (experts must be numbered 0..%d without gaps)", dir, lp.index, e, s.name, n-1)
			}
			if e == 0 {
				s.dtype, s.shape = x.DType, x.Shape
				continue
			}
			if x.DType != s.dtype || !slices.Equal(x.Shape, s.shape) {
				return mismatch("%s: layer %d: %s is %s %v but expert 0's is %s %v", dir, lp.index, x.Name, x.DType, x.Shape, s.dtype, s.shape)
			}
		}
	}
	return nil
}

// newPlan inspects the checkpoint's headers and decides the layout.
func newPlan(dir string, cfg *modelconfig.Config, hs *safetensors.Headers, srcQuant checkpoint.Quant, opts Options) (*plan, error) {
	byLayer, err := collect(cfg, hs)
	if err != nil {
		return nil, err
	}
	if len(byLayer) == 0 {
		return nil, fault.Mark(fmt.Errorf("%s: no routed-expert tensors found (model_type %s); the checkpoint has no experts to export", dir, cfg.ModelType), fault.ErrIO)
	}
	for _, i := range cfg.MoELayers() {
		if _, ok := byLayer[i]; !ok {
			return nil, fault.Mark(fmt.Errorf("%s: config.json makes layer %d a MoE layer, but it has no routed-expert tensors", dir, i), fault.ErrIO)
		}
	}
	p := &plan{}
	indices := make([]int, 0, len(byLayer))
	for i := range byLayer {
		indices = append(indices, i)
	}
	slices.Sort(indices)
	for _, i := range indices {
		lp := &layerPlan{index: i, file: sidecar.LayerFileNameWidth(i, max(cfg.NumLayers, i+1))}
		for _, s := range byLayer[i] {
			lp.sources = append(lp.sources, s)
		}
		slices.SortFunc(lp.sources, func(a, b *source) int {
			return cmp.Or(cmp.Compare(projOrder[a.proj], projOrder[b.proj]), cmp.Compare(partOrder[a.part], partOrder[b.part]))
		})
		if err := lp.check(dir); err != nil {
			return nil, err
		}
		p.layers = append(p.layers, lp)
	}
	// Every layer must pack the same components the same way.
	first := p.layers[0]
	for _, lp := range p.layers[1:] {
		if len(lp.sources) != len(first.sources) {
			return nil, mismatch("%s: layer %d has %d routed-expert tensors per expert, layer %d has %d; every MoE layer must use one format", dir, lp.index, len(lp.sources), first.index, len(first.sources))
		}
		for j, s := range lp.sources {
			f := first.sources[j]
			if s.name != f.name || s.dtype != f.dtype || !slices.Equal(s.shape, f.shape) {
				return nil, mismatch("%s: layer %d %s is %s %v, layer %d %s is %s %v; every MoE layer must use one format", dir, lp.index, s.name, s.dtype, s.shape, first.index, f.name, f.dtype, f.shape)
			}
		}
	}
	counts := map[int]int{}
	for _, lp := range p.layers {
		counts[lp.experts]++
	}
	common := first.experts
	for n, c := range counts {
		if c > counts[common] || (c == counts[common] && n > common) {
			common = n
		}
	}
	if opts.NumExperts > 0 {
		for _, lp := range p.layers {
			if lp.experts != opts.NumExperts {
				return nil, usage("--num-experts %d disagrees with the checkpoint: layer %d holds %d routed experts", opts.NumExperts, lp.index, lp.experts)
			}
		}
	}
	if cfg.NumExperts > 0 && common != cfg.NumExperts {
		return nil, mismatch("%s: the safetensors hold %d experts per layer, config.json's expert count is %d", dir, common, cfg.NumExperts)
	}
	if err := p.components(dir, first, srcQuant, opts); err != nil {
		return nil, err
	}
	l := &sidecar.Layout{
		Format: sidecar.Format, Version: sidecar.Version, ModelType: cfg.ModelType,
		NumExperts: common, Alignment: sidecar.DirectIOAlignment, Checksum: sidecar.ChecksumCRC32C,
	}
	var off int64
	for i := range p.comps {
		c := &p.comps[i].Component
		off = roundUp(off, componentAlign)
		c.Offset = off
		off += c.Size
		l.Components = append(l.Components, *c)
	}
	l.ExpertStride = roundUp(off, sidecar.DirectIOAlignment)
	for _, lp := range p.layers {
		ly := sidecar.Layer{Index: lp.index, File: lp.file, Size: int64(lp.experts) * l.ExpertStride}
		if lp.experts != common {
			ly.NumExperts = lp.experts
		}
		l.Layers = append(l.Layers, ly)
	}
	if p.quantize {
		l.Quant = sidecar.Quant{Mode: modelconfig.ModeAffine, Bits: opts.Bits, GroupSize: opts.GroupSize}
	} else {
		l.Quant = sidecar.Quant{Mode: srcQuant.Mode, Bits: srcQuant.Bits, GroupSize: srcQuant.GroupSize}
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	p.layout = l
	return p, nil
}

func roundUp(n, a int64) int64 { return (n + a - 1) / a * a }

// isFloat reports whether d is a plain float type the quantizer reads.
func isFloat(d safetensors.DType) bool {
	return d == safetensors.BF16 || d == safetensors.F16 || d == safetensors.F32
}

// components decides the output components from one layer's sources.
func (p *plan) components(dir string, lp *layerPlan, srcQuant checkpoint.Quant, opts Options) error {
	// Which sources are weights to quantize?
	floatWeights := 0
	weights := 0
	for _, s := range lp.sources {
		if s.part == checkpoint.Weight || s.part == checkpoint.Blocks {
			weights++
			if isFloat(s.dtype) {
				floatWeights++
			}
		}
	}
	if opts.Bits > 0 {
		switch {
		case floatWeights == weights && weights > 0:
			p.quantize = true
		case srcQuant.Mode == modelconfig.ModeAffine && srcQuant.Bits == opts.Bits && (opts.GroupSize == 0 || opts.GroupSize == srcQuant.GroupSize || !opts.GroupSizeSet):
			// The checkpoint's own bits: copy unchanged.
		default:
			return usage("--bits %d: the routed experts are already %s; this exporter quantizes bf16/f16/f32 experts only and never requantizes (omit --bits to copy them unchanged)", opts.Bits, srcQuant)
		}
	}
	if p.quantize {
		switch opts.Bits {
		case 2, 3, 4, 5, 6, 8:
		default:
			return usage("--bits %d: MLX affine takes 2, 3, 4, 5, 6 or 8 bits", opts.Bits)
		}
		if opts.GroupSize <= 0 {
			return usage("--group-size %d: want a positive group size (MLX uses 32, 64 or 128)", opts.GroupSize)
		}
	}
	for i, s := range lp.sources {
		c := sidecar.Component{Name: s.name, DType: string(s.dtype), Shape: append([]int64(nil), s.shape...), Transposed: s.transposed, Interleaved: s.interleaved}
		if !p.quantize || s.part != checkpoint.Weight {
			n, err := sidecar.ComponentSize(c.DType, c.Shape)
			if err != nil {
				return mismatch("%s: layer %d %s (%s %v): %v", dir, lp.index, s.name, s.dtype, s.shape, err)
			}
			c.Size = n
			p.comps = append(p.comps, componentPlan{Component: c, src: i})
			continue
		}
		if len(s.shape) != 2 {
			return mismatch("%s: layer %d %s has per-expert shape %v; only matrices can be quantized", dir, lp.index, s.name, s.shape)
		}
		out, in := s.shape[0], s.shape[1]
		if s.transposed {
			out, in = in, out
		}
		if in%int64(opts.GroupSize) != 0 || in*int64(opts.Bits)%32 != 0 {
			return usage("--group-size %d / --bits %d: %s rows of %d values are not whole groups and 32-bit words", opts.GroupSize, opts.Bits, s.name, in)
		}
		st := scaleTypeOf(s.dtype)
		p.scaleType = st
		base := strings.TrimSuffix(s.name, ".weight")
		sdt := string(s.dtype)
		for _, part := range []struct {
			name  string
			dtype string
			cols  int64
		}{
			{"weight", "U32", in * int64(opts.Bits) / 32},
			{"scales", sdt, in / int64(opts.GroupSize)},
			{"biases", sdt, in / int64(opts.GroupSize)},
		} {
			qc := sidecar.Component{Name: base + "." + part.name, DType: part.dtype, Shape: []int64{out, part.cols}, Interleaved: s.interleaved}
			n, err := sidecar.ComponentSize(qc.DType, qc.Shape)
			if err != nil {
				return mismatch("%s: %v", qc.Name, err)
			}
			qc.Size = n
			p.comps = append(p.comps, componentPlan{Component: qc, src: i, quantPart: part.name})
		}
	}
	// A source already holding .scales/.biases for a quantized weight
	// would now collide with the generated names.
	seen := map[string]bool{}
	for _, c := range p.comps {
		if seen[c.Name] {
			return mismatch("%s: component %s would be written twice", dir, c.Name)
		}
		seen[c.Name] = true
	}
	return nil
}

func scaleTypeOf(d safetensors.DType) quant.ScaleType {
	switch d {
	case safetensors.F32:
		return quant.ScaleF32
	case safetensors.F16:
		return quant.ScaleF16
	}
	return quant.ScaleBF16
}

func kindOf(d safetensors.DType) quant.Kind {
	switch d {
	case safetensors.F32:
		return quant.F32
	case safetensors.F16:
		return quant.F16
	}
	return quant.BF16
}
