package gptoss

import (
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/quant"
)

// expertBinder binds one layer's routed experts in whichever layout the
// checkpoint uses:
//
//   - MXFP4 blocks (the original gpt-oss checkpoint):
//     experts.gate_up_proj_blocks [E, 2I, H/32, 16] + _scales, rows =
//     outputs with gate and up alternating, experts.down_proj_blocks
//     [E, H, I/32, 16] + _scales, and _bias tensors. Bound zero-copy; the
//     MoE block activates the interleaved pairs in place.
//   - transformers' dequantized form (f32/bf16 save_pretrained):
//     experts.gate_up_proj [E, H, 2I] and experts.down_proj [E, I, H],
//     input-major. The kernels take [out, in], so these are transposed into
//     memory at load (gate and up de-interleaved on the way): a copy, the
//     price of this layout.
//   - MLX (mlx-lm's conversion): experts.{gate,up,down}_proj.{weight,
//     scales,bias} stacked [E, out, in] in mxfp4 mode (or any format
//     pkg/quant reads), gate and up already split. Zero-copy.
//   - the per-expert engine layout (mach-prune):
//     experts.<e>.{gate,up,down}_proj.{weight,scales,bias}. Zero-copy.
type expertBinder struct {
	w      *model.Weights
	b      kernels.Backend
	n      int // experts
	hidden int
	inter  int
	// copied counts the bytes transposed into memory; vectors the bias
	// bytes uploaded.
	copied, vectors int64
}

func (eb *expertBinder) bind(prefix string) ([]*moe.Expert, error) {
	w := eb.w
	switch {
	case w.Has(prefix + "experts.gate_up_proj_blocks"):
		return eb.blocks(prefix + "experts.")
	case w.Has(prefix + "experts.gate_up_proj"):
		return eb.inputMajor(prefix + "experts.")
	case w.Has(prefix + "experts.gate_proj.weight"):
		return eb.split(prefix + "experts.")
	case w.Has(prefix + "experts.0.gate_proj.weight"):
		return eb.perExpert(prefix + "experts.")
	}
	return nil, fault.Mark(fmt.Errorf("%s: no gpt_oss routed experts under %q: expected %sexperts.gate_up_proj_blocks (MXFP4), %sexperts.gate_up_proj (transformers), %sexperts.gate_proj.weight (MLX) or %sexperts.0.gate_proj.weight (engine layout)",
		w.Dir, prefix, prefix, prefix, prefix, prefix), fault.ErrIO)
}

func shapeErr(t model.Tensor, want ...int) error {
	ok := len(t.Shape) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = int(t.Shape[i]) == want[i]
	}
	if ok {
		return nil
	}
	return fault.Mark(fmt.Errorf("tensor %q has shape %v, want %v from config.json", t.Name, t.Shape, want), fault.ErrIO)
}

// biases uploads row e of the [E, width] tensor name for every expert,
// reordered by perm (perm[j] is the stored column of output j; nil keeps
// the order).
func (eb *expertBinder) biases(name string, width int, perm []int) ([]kernels.Tensor, error) {
	t, err := eb.w.Matrix(name)
	if err != nil {
		return nil, err
	}
	if err := shapeErr(t, eb.n, width); err != nil {
		return nil, err
	}
	if t.M.Format.Quantized() {
		return nil, fault.Mark(fmt.Errorf("%s: tensor %q is quantized; expert biases must be f32, f16 or bf16", eb.w.Dir, name), fault.ErrUnsupported)
	}
	row := make([]float32, width)
	vals := make([]float32, width)
	out := make([]kernels.Tensor, eb.n)
	for e := range out {
		t.M.DequantRow(e, row)
		if perm != nil {
			for j, c := range perm {
				vals[j] = row[c]
			}
		} else {
			copy(vals, row)
		}
		if out[e], err = eb.upload(vals); err != nil {
			return nil, err
		}
	}
	eb.vectors += int64(t.M.Bytes())
	return out, nil
}

func (eb *expertBinder) upload(vals []float32) (kernels.Tensor, error) {
	x, err := eb.b.Alloc(kernels.F32, 1, len(vals))
	if err != nil {
		return kernels.Tensor{}, err
	}
	return x, eb.b.Write(x, vals)
}

// blocks binds the original MXFP4 form.
func (eb *expertBinder) blocks(p string) ([]*moe.Expert, error) {
	gu, err := eb.w.Matrix(p + "gate_up_proj")
	if err != nil {
		return nil, err
	}
	if err := shapeErr(gu, eb.n, 2*eb.inter, eb.hidden); err != nil {
		return nil, err
	}
	down, err := eb.w.Matrix(p + "down_proj")
	if err != nil {
		return nil, err
	}
	if err := shapeErr(down, eb.n, eb.hidden, eb.inter); err != nil {
		return nil, err
	}
	guBias, err := eb.biases(p+"gate_up_proj_bias", 2*eb.inter, nil)
	if err != nil {
		return nil, err
	}
	downBias, err := eb.biases(p+"down_proj_bias", eb.hidden, nil)
	if err != nil {
		return nil, err
	}
	out := make([]*moe.Expert, eb.n)
	for e := range out {
		x := &moe.Expert{Interleaved: true, GateUpBias: guBias[e], DownBias: downBias[e]}
		if x.GateUp, err = eb.w.Bind(gu.Name, gu.Slice(e)); err != nil {
			return nil, err
		}
		if x.Down, err = eb.w.Bind(down.Name, down.Slice(e)); err != nil {
			return nil, err
		}
		out[e] = x
	}
	return out, nil
}

// inputMajor binds transformers' [E, in, out] form by transposing each
// expert into [out, in] memory in its own element type (exact), with gate
// rows first and up rows second.
func (eb *expertBinder) inputMajor(p string) ([]*moe.Expert, error) {
	gu, err := eb.w.Matrix(p + "gate_up_proj")
	if err != nil {
		return nil, err
	}
	if err := shapeErr(gu, eb.n, eb.hidden, 2*eb.inter); err != nil {
		return nil, err
	}
	down, err := eb.w.Matrix(p + "down_proj")
	if err != nil {
		return nil, err
	}
	if err := shapeErr(down, eb.n, eb.inter, eb.hidden); err != nil {
		return nil, err
	}
	if gu.M.Format.Quantized() || down.M.Format.Quantized() {
		return nil, fault.Mark(fmt.Errorf("%s: %q is quantized in the input-major layout, which no gpt-oss format uses", eb.w.Dir, gu.Name), fault.ErrUnsupported)
	}
	// Output j of the de-interleaved gate_up is stored column perm[j].
	perm := make([]int, 2*eb.inter)
	for j := range eb.inter {
		perm[j], perm[eb.inter+j] = 2*j, 2*j+1
	}
	guBias, err := eb.biases(p+"gate_up_proj_bias", 2*eb.inter, perm)
	if err != nil {
		return nil, err
	}
	downBias, err := eb.biases(p+"down_proj_bias", eb.hidden, nil)
	if err != nil {
		return nil, err
	}
	out := make([]*moe.Expert, eb.n)
	for e := range out {
		x := &moe.Expert{GateUpBias: guBias[e], DownBias: downBias[e]}
		if x.GateUp, err = eb.w.Bind(gu.Name, eb.transpose(gu.Slice(e), perm)); err != nil {
			return nil, err
		}
		if x.Down, err = eb.w.Bind(down.Name, eb.transpose(down.Slice(e), nil)); err != nil {
			return nil, err
		}
		out[e] = x
	}
	return out, nil
}

// transpose returns the [cols, rows] matrix of a plain [rows, cols] one in
// new memory, output row j taken from input column perm[j] (j itself when
// perm is nil).
func (eb *expertBinder) transpose(m *quant.Matrix, perm []int) *quant.Matrix {
	size := m.Format.RowBytes(1)
	in, out := m.Rows, m.Cols
	data := make([]byte, len(m.Data))
	for j := 0; j < out; j++ {
		c := j
		if perm != nil {
			c = perm[j]
		}
		for i := 0; i < in; i++ {
			copy(data[(j*in+i)*size:(j*in+i+1)*size], m.Data[(i*out+c)*size:(i*out+c+1)*size])
		}
	}
	eb.copied += int64(len(data))
	return &quant.Matrix{Format: m.Format, Rows: out, Cols: in, Data: data}
}

// split binds MLX's stacked per-projection form.
func (eb *expertBinder) split(p string) ([]*moe.Expert, error) {
	var ts [3]model.Tensor
	var bs [3][]kernels.Tensor
	for i, name := range []string{"gate_proj", "up_proj", "down_proj"} {
		t, err := eb.w.Matrix(p + name)
		if err != nil {
			return nil, err
		}
		out, in := eb.inter, eb.hidden
		if name == "down_proj" {
			out, in = eb.hidden, eb.inter
		}
		if err := shapeErr(t, eb.n, out, in); err != nil {
			return nil, err
		}
		ts[i] = t
		if eb.w.Has(p + name + ".bias") {
			if bs[i], err = eb.biases(p+name+".bias", out, nil); err != nil {
				return nil, err
			}
		}
	}
	if (bs[0] == nil) != (bs[1] == nil) || (bs[0] == nil) != (bs[2] == nil) {
		return nil, fault.Mark(fmt.Errorf("%s: %s{gate,up,down}_proj.bias: some present, some missing", eb.w.Dir, p), fault.ErrIO)
	}
	out := make([]*moe.Expert, eb.n)
	var err error
	for e := range out {
		x := &moe.Expert{}
		if bs[0] != nil {
			x.GateBias, x.UpBias, x.DownBias = bs[0][e], bs[1][e], bs[2][e]
		}
		if x.Gate, err = eb.w.Bind(ts[0].Name, ts[0].Slice(e)); err != nil {
			return nil, err
		}
		if x.Up, err = eb.w.Bind(ts[1].Name, ts[1].Slice(e)); err != nil {
			return nil, err
		}
		if x.Down, err = eb.w.Bind(ts[2].Name, ts[2].Slice(e)); err != nil {
			return nil, err
		}
		out[e] = x
	}
	return out, nil
}

// perExpert binds the engine layout: one tensor per expert and projection.
func (eb *expertBinder) perExpert(p string) ([]*moe.Expert, error) {
	out := make([]*moe.Expert, eb.n)
	var err error
	for e := range out {
		q := fmt.Sprintf("%s%d.", p, e)
		x := &moe.Expert{}
		var gate, up, down *model.Linear
		if gate, err = eb.w.LoadLinear(q+"gate_proj", eb.inter, eb.hidden); err != nil {
			return nil, err
		}
		if up, err = eb.w.LoadLinear(q+"up_proj", eb.inter, eb.hidden); err != nil {
			return nil, err
		}
		if down, err = eb.w.LoadLinear(q+"down_proj", eb.hidden, eb.inter); err != nil {
			return nil, err
		}
		x.Gate, x.Up, x.Down = gate.W, up.W, down.W
		x.GateBias, x.UpBias, x.DownBias = gate.Bias, up.Bias, down.Bias
		out[e] = x
	}
	return out, nil
}
