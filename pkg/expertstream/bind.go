package expertstream

import (
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// matRecipe turns a slab's bytes into one projection's matrix.
type matRecipe struct {
	name                 string
	format               quant.Format
	rows, cols           int
	data, scales, biases *sidecar.Component
	// interleaved: gate_up rows alternate gate and up (gpt-oss's MXFP4
	// blocks), which the MoE block activates in place.
	interleaved bool
}

func (r *matRecipe) matrix(slab []byte) *quant.Matrix {
	part := func(c *sidecar.Component) []byte {
		if c == nil {
			return nil
		}
		return slab[c.Offset : c.Offset+c.Size : c.Offset+c.Size]
	}
	return &quant.Matrix{Format: r.format, Rows: r.rows, Cols: r.cols, Data: part(r.data), Scales: part(r.scales), Biases: part(r.biases)}
}

// biasRecipe is an additive bias vector (gpt-oss experts).
type biasRecipe struct {
	comp *sidecar.Component
	kind quant.Kind
	n    int
}

// recipe binds one expert slab: either gateUp or gate and up, then down,
// each with its optional additive bias (gpt-oss): gateUpBias with a fused
// gateUp, gateBias and upBias with a separate gate and up (gpt-oss in MLX's
// split form, and mach-prune's per-expert output of any gpt-oss form).
type recipe struct {
	gateUp, gate, up, down                 *matRecipe
	gateUpBias, gateBias, upBias, downBias *biasRecipe
}

// slotBiases are one cache slot's bias vectors on the backend, allocated on
// the slot's first bind and rewritten by each expert loaded into it.
type slotBiases struct {
	gateUp, gate, up, down kernels.Tensor
}

func plainKind(dtype string) (quant.Kind, bool) {
	switch dtype {
	case "F32":
		return quant.F32, true
	case "F16":
		return quant.F16, true
	case "BF16":
		return quant.BF16, true
	}
	return 0, false
}

func scaleOf(dtype string) quant.ScaleType {
	switch dtype {
	case "F32":
		return quant.ScaleF32
	case "F16":
		return quant.ScaleF16
	case "BF16":
		return quant.ScaleBF16
	case "U8", "F8_E8M0":
		return quant.ScaleE8M0
	}
	return quant.ScaleNone
}

// newRecipe reads the layout's components. hidden and width, when
// positive, are checked against the matrices' shapes.
func newRecipe(l *sidecar.Layout, hidden, width int) (*recipe, error) {
	bad := func(format string, args ...any) error {
		return fault.Mark(fmt.Errorf("expert sidecar: "+format, args...), fault.ErrUnsupported)
	}
	comp := func(name string) *sidecar.Component {
		c, ok := l.Component(name)
		if !ok {
			return nil
		}
		return &c
	}
	mat := func(proj string, rows, cols int) (*matRecipe, error) {
		r := &matRecipe{name: proj, data: comp(proj + ".weight"), scales: comp(proj + ".scales"), biases: comp(proj + ".biases")}
		if blocks := comp(proj + ".blocks"); blocks != nil {
			r.data, r.biases = blocks, nil
			if r.scales == nil || blocks.DType != "U8" || len(blocks.Shape) != 3 || blocks.Shape[2] != 16 {
				return nil, bad("%s.blocks %s %v: want U8 [rows, groups, 16] MXFP4 blocks with U8 scales", proj, blocks.DType, blocks.Shape)
			}
			r.format = quant.Format{Kind: quant.MXFP4, Bits: 4, GroupSize: 32, Scale: quant.ScaleE8M0}
			r.rows, r.cols = int(blocks.Shape[0]), int(blocks.Shape[1])*32
			r.interleaved = blocks.Interleaved
		} else if sc := comp(proj + ".scale"); r.data != nil && sc != nil && r.scales == nil {
			// DeepSeek-V4's FP4 experts: e2m1 pairs [rows, cols/2] (I8 or
			// U8) with an e8m0 scale per 32 values — MXFP4, used as stored.
			d := r.data
			if (d.DType != "I8" && d.DType != "U8") || len(d.Shape) != 2 || scaleOf(sc.DType) != quant.ScaleE8M0 ||
				len(sc.Shape) != 2 || sc.Shape[0] != d.Shape[0] || sc.Shape[1]*16 != d.Shape[1] {
				return nil, bad("%s.weight %s %v with %s.scale %s %v: want FP4 pairs [rows, cols/2] with e8m0 scales [rows, cols/32]", proj, d.DType, d.Shape, proj, sc.DType, sc.Shape)
			}
			r.scales = sc
			r.format = quant.Format{Kind: quant.MXFP4, Bits: 4, GroupSize: 32, Scale: quant.ScaleE8M0}
			r.rows, r.cols = int(d.Shape[0]), int(d.Shape[1])*2
		} else if r.data != nil {
			d := r.data
			if d.Transposed || d.Interleaved {
				return nil, bad("%s.weight is stored %s, which this build cannot stream (re-export with --bits to quantize it into the ordinary layout)", proj, map[bool]string{true: "input-major", false: "with interleaved gate/up rows"}[d.Transposed])
			}
			if len(d.Shape) != 2 {
				return nil, bad("%s.weight has shape %v, want a matrix", proj, d.Shape)
			}
			r.rows = int(d.Shape[0])
			if k, ok := plainKind(d.DType); ok && r.scales == nil {
				r.format, r.cols = quant.Format{Kind: k}, int(d.Shape[1])
			} else {
				if d.DType != "U32" || r.scales == nil || len(r.scales.Shape) != 2 {
					return nil, bad("%s.weight is %s %v without usable scales; this build streams f32/f16/bf16, MLX affine and mxfp4 experts", proj, d.DType, d.Shape)
				}
				st := scaleOf(r.scales.DType)
				packed, groups := int(d.Shape[1]), int(r.scales.Shape[1])
				switch {
				case st == quant.ScaleE8M0 && r.biases == nil:
					r.cols = packed * 32 / 4
					r.format = quant.Format{Kind: quant.MXFP4, Bits: 4, GroupSize: r.cols / max(groups, 1), Scale: st}
				case st != quant.ScaleNone && st != quant.ScaleE8M0 && r.biases != nil:
					g := l.Quant.GroupSize
					if g <= 0 {
						return nil, bad("layout.json gives no quant.group_size for the affine experts")
					}
					r.cols = groups * g
					if r.cols == 0 || packed*32%r.cols != 0 {
						return nil, bad("%s: %d packed words per row do not fit %d groups of %d", proj, packed, groups, g)
					}
					r.format = quant.Format{Kind: quant.Affine, Bits: packed * 32 / r.cols, GroupSize: g, Scale: st}
				default:
					return nil, bad("%s: scales %s with%s biases is not a quantization this build computes with", proj, r.scales.DType, map[bool]string{true: "", false: "out"}[r.biases != nil])
				}
			}
		} else {
			return nil, nil
		}
		if (rows > 0 && r.rows != rows) || (cols > 0 && r.cols != cols) {
			return nil, bad("%s is %d×%d, config.json wants %d×%d; the sidecar belongs to another model", proj, r.rows, r.cols, rows, cols)
		}
		// Check the byte sizes once, at start-up.
		if err := r.matrix(make([]byte, l.ExpertStride)).Validate(); err != nil {
			return nil, bad("%s: %v", proj, err)
		}
		return r, nil
	}
	bias := func(name string, n int) (*biasRecipe, error) {
		c := comp(name)
		if c == nil {
			return nil, nil
		}
		k, ok := plainKind(c.DType)
		if !ok || len(c.Shape) != 1 || (n > 0 && int(c.Shape[0]) != n) {
			return nil, bad("%s is %s %v, want a float vector of %d", name, c.DType, c.Shape, n)
		}
		return &biasRecipe{comp: c, kind: k, n: int(c.Shape[0])}, nil
	}
	r := &recipe{}
	var err error
	if r.gateUp, err = mat("gate_up_proj", 2*width, hidden); err != nil {
		return nil, err
	}
	if r.gate, err = mat("gate_proj", width, hidden); err != nil {
		return nil, err
	}
	if r.up, err = mat("up_proj", width, hidden); err != nil {
		return nil, err
	}
	if r.down, err = mat("down_proj", hidden, width); err != nil {
		return nil, err
	}
	switch {
	case r.down == nil:
		return nil, bad("no down_proj weight among the components")
	case r.gateUp == nil && (r.gate == nil || r.up == nil):
		return nil, bad("no gate_up_proj, or gate_proj and up_proj, weights among the components")
	case r.gateUp != nil && (r.gate != nil || r.up != nil):
		return nil, bad("both gate_up_proj and gate_proj/up_proj weights among the components")
	}
	w := width
	if w <= 0 && r.gateUp != nil {
		w = r.gateUp.rows / 2
	}
	if r.gateUp != nil {
		if comp("gate_proj.bias") != nil || comp("up_proj.bias") != nil {
			return nil, bad("gate_proj.bias / up_proj.bias beside a fused gate_up_proj weight: the biases belong to separate gate and up projections")
		}
		if r.gateUpBias, err = bias("gate_up_proj.bias", 2*w); err != nil {
			return nil, err
		}
	} else {
		// Separate gate and up, each with its own bias, as the resident
		// loaders bind them (moe.Expert's GateBias and UpBias).
		if comp("gate_up_proj.bias") != nil {
			return nil, bad("gate_up_proj.bias beside separate gate_proj and up_proj weights: the bias belongs to a fused gate_up projection")
		}
		if r.gateBias, err = bias("gate_proj.bias", r.gate.rows); err != nil {
			return nil, err
		}
		if r.upBias, err = bias("up_proj.bias", r.up.rows); err != nil {
			return nil, err
		}
	}
	if r.downBias, err = bias("down_proj.bias", r.down.rows); err != nil {
		return nil, err
	}
	return r, nil
}

// bind binds the expert in slab to b. Bias vectors are copied into the
// slot's tensors (allocated on first use and reused by the slot).
func (r *recipe) bind(b kernels.Backend, slab []byte, sb *slotBiases) (*moe.Expert, error) {
	x := &moe.Expert{}
	var err error
	one := func(m *matRecipe) (kernels.Weight, error) {
		w, _, err := kernels.BindOrDequantize(b, m.matrix(slab))
		if err != nil {
			return nil, fmt.Errorf("bind %s on %s: %w", m.name, b.Name(), err)
		}
		return w, nil
	}
	if r.gateUp != nil {
		if x.GateUp, err = one(r.gateUp); err != nil {
			return nil, err
		}
		x.Interleaved = r.gateUp.interleaved
	} else {
		if x.Gate, err = one(r.gate); err != nil {
			return nil, err
		}
		if x.Up, err = one(r.up); err != nil {
			return nil, err
		}
	}
	if x.Down, err = one(r.down); err != nil {
		return nil, err
	}
	vec := func(br *biasRecipe, t *kernels.Tensor) (kernels.Tensor, error) {
		if br == nil {
			return kernels.Tensor{}, nil
		}
		if t.IsZero() {
			if *t, err = b.Alloc(kernels.F32, 1, br.n); err != nil {
				return kernels.Tensor{}, err
			}
		}
		c := br.comp
		vals := (&quant.Matrix{Format: quant.Format{Kind: br.kind}, Rows: 1, Cols: br.n, Data: slab[c.Offset : c.Offset+c.Size]}).Dequantize()
		return *t, b.Write(*t, vals)
	}
	if x.GateUpBias, err = vec(r.gateUpBias, &sb.gateUp); err != nil {
		return nil, err
	}
	if x.GateBias, err = vec(r.gateBias, &sb.gate); err != nil {
		return nil, err
	}
	if x.UpBias, err = vec(r.upBias, &sb.up); err != nil {
		return nil, err
	}
	if x.DownBias, err = vec(r.downBias, &sb.down); err != nil {
		return nil, err
	}
	return x, nil
}
