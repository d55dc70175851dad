package model

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// Weights binds checkpoint tensors to a backend. The safetensors shards are
// memory-mapped; quantized and plain weights are described as quant.Matrix
// values over the mapped bytes and bound without copying (the CPU backend
// computes from the mapping). Close unmaps them, so the Model must not be
// used afterwards.
type Weights struct {
	Dir string
	cfg *modelconfig.Config
	b   kernels.Backend
	set *safetensors.Set
	// bytes counts the tensors bound; vectors counts the small tensors
	// copied to backend memory (norm weights, biases).
	bytes, vectors int64
	log            *slog.Logger
}

// ErrWeight is wrapped by errors about tensors that are missing, malformed
// or in a format mach cannot compute with.
var ErrWeight = errors.New("unusable weight")

// OpenWeights maps dir's safetensors shards.
func OpenWeights(dir string, cfg *modelconfig.Config, b kernels.Backend) (*Weights, error) {
	set, err := safetensors.OpenSet(dir)
	if err != nil {
		return nil, err
	}
	return &Weights{Dir: dir, cfg: cfg, b: b, set: set, log: slog.Default()}, nil
}

// BindWeights maps dir's shards and hands them to bind, which builds a
// model on them; when bind fails the shards are unmapped again. It is what
// every architecture's Load does once its options are parsed.
func BindWeights[M any](dir string, cfg *modelconfig.Config, b kernels.Backend, bind func(*Weights) (M, error)) (M, error) {
	var none M
	w, err := OpenWeights(dir, cfg, b)
	if err != nil {
		return none, err
	}
	m, err := bind(w)
	if err != nil {
		_ = w.Close()
		return none, err
	}
	return m, nil
}

// Close unmaps the shards.
func (w *Weights) Close() error { return w.set.Close() }

// Has reports whether a tensor exists.
func (w *Weights) Has(name string) bool {
	_, ok := w.set.Lookup(name)
	return ok
}

// BoundBytes returns the bytes of every tensor bound so far.
func (w *Weights) BoundBytes() int64 { return w.bytes + w.vectors }

// Names returns every tensor name, sorted.
func (w *Weights) Names() []string { return w.set.Names() }

func (w *Weights) errf(name string, format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%s: tensor %q: %w: %s", w.Dir, name, ErrWeight, fmt.Sprintf(format, args...)), fault.ErrUnsupported)
}

func (w *Weights) missing(names ...string) error {
	return fault.Mark(fmt.Errorf("%s: %w: no tensor %s; the checkpoint does not match config.json's model_type %q (or is incomplete)",
		w.Dir, ErrWeight, strings.Join(quoteAll(names), " or "), w.cfg.ModelType), fault.ErrIO)
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = fmt.Sprintf("%q", x)
	}
	return out
}

// Tensor is a weight decoded into a matrix: the rows of every leading
// dimension stacked (an [E, out, in] tensor is E·out rows), so experts and
// halves are RowRange views.
type Tensor struct {
	Name string
	M    *quant.Matrix
	// Shape is the logical shape, in elements: [..., out, in].
	Shape []int64
}

// Lead returns the number of matrices stacked along the leading dims.
func (t Tensor) Lead() int {
	n := 1
	for _, d := range t.Shape[:len(t.Shape)-2] {
		n *= int(d)
	}
	return n
}

// Slice returns matrix i of a stacked tensor.
func (t Tensor) Slice(i int) *quant.Matrix {
	out := int(t.Shape[len(t.Shape)-2])
	return t.M.RowRange(i*out, (i+1)*out)
}

// Matrix decodes the weight stored as base.weight (or base itself, as
// transformers 5 saves fused experts), with MLX quantization companions
// base.scales/base.biases, gpt-oss base_blocks/base_scales or DeepSeek's
// FP8/FP4 base.scale.
func (w *Weights) Matrix(base string) (Tensor, error) {
	switch {
	case w.Has(base + "_blocks"):
		return w.blocks(base)
	case w.Has(base+".weight") && w.Has(base+".scale"):
		return w.scaled(base) // DeepSeek FP8/FP4 (blockscale.go)
	case strings.HasSuffix(base, ".weight") && w.Has(base) && w.Has(strings.TrimSuffix(base, ".weight")+".scale"):
		return w.scaled(strings.TrimSuffix(base, ".weight"))
	case w.Has(base + ".weight"):
		return w.decode(base, base+".weight")
	case w.Has(base):
		return w.decode(base, base)
	}
	return Tensor{}, w.missing(base+".weight", base)
}

func (w *Weights) bytesOf(name string) ([]byte, safetensors.TensorInfo, error) {
	b, info, err := w.set.Bytes(name)
	if err != nil {
		return nil, info, fault.Mark(err, fault.ErrIO)
	}
	return b, info, nil
}

func (w *Weights) decode(base, name string) (Tensor, error) {
	data, info, err := w.bytesOf(name)
	if err != nil {
		return Tensor{}, err
	}
	if len(info.Shape) < 2 {
		return Tensor{}, w.errf(name, "shape %v is not a matrix", info.Shape)
	}
	rows := 1
	for _, d := range info.Shape[:len(info.Shape)-1] {
		rows *= int(d)
	}
	packed := int(info.Shape[len(info.Shape)-1])
	shape := append([]int64(nil), info.Shape...)
	m := &quant.Matrix{Rows: rows, Data: data}
	if w.Has(base + ".scales") {
		if info.DType != safetensors.U32 {
			return Tensor{}, w.errf(name, "quantized weight of dtype %s (want U32 packed codes)", info.DType)
		}
		if w.cfg.Quant == nil {
			return Tensor{}, w.errf(name, "%s.scales exists but config.json has no quantization block", base)
		}
		mq := w.cfg.Quant.ForModule(base)
		if !mq.Quantized {
			return Tensor{}, w.errf(name, "config.json's quantization block marks %q unquantized, yet %s.scales exists", base, base)
		}
		scales, sinfo, err := w.bytesOf(base + ".scales")
		if err != nil {
			return Tensor{}, err
		}
		st := scaleType(sinfo.DType)
		f, err := quantFormat(mq, st)
		if err != nil {
			return Tensor{}, w.errf(name, "%v", err)
		}
		if f.Bits <= 0 || packed*32%f.Bits != 0 {
			return Tensor{}, w.errf(name, "%d packed words per row do not hold %d-bit codes", packed, f.Bits)
		}
		cols := packed * 32 / f.Bits
		if f.GroupSize <= 0 || cols%f.GroupSize != 0 || !sameLead(sinfo.Shape, info.Shape) || int(sinfo.Shape[len(sinfo.Shape)-1]) != cols/f.GroupSize {
			return Tensor{}, w.errf(base+".scales", "shape %v does not fit %v at %s (config.json group_size %d, bits %d)", sinfo.Shape, info.Shape, f, mq.GroupSize, mq.Bits)
		}
		m.Format, m.Cols, m.Scales = f, cols, scales
		if f.Kind == quant.Affine {
			biases, binfo, err := w.bytesOf(base + ".biases")
			if err != nil {
				return Tensor{}, w.errf(name, "affine quantization needs %s.biases: %v", base, err)
			}
			if binfo.DType != sinfo.DType || !sameShape(binfo.Shape, sinfo.Shape) {
				return Tensor{}, w.errf(base+".biases", "dtype %s shape %v, want %s %v like the scales", binfo.DType, binfo.Shape, sinfo.DType, sinfo.Shape)
			}
			m.Biases = biases
		}
		shape[len(shape)-1] = int64(cols)
	} else {
		switch info.DType {
		case safetensors.F32:
			m.Format = quant.Format{Kind: quant.F32}
		case safetensors.F16:
			m.Format = quant.Format{Kind: quant.F16}
		case safetensors.BF16:
			m.Format = quant.Format{Kind: quant.BF16}
		default:
			return Tensor{}, w.errf(name, "dtype %s is not a weight format mach computes with (f32, f16, bf16, MLX affine, mxfp4)", info.DType)
		}
		m.Cols = packed
	}
	if err := m.Validate(); err != nil {
		return Tensor{}, w.errf(name, "%v", err)
	}
	return Tensor{Name: name, M: m, Shape: shape}, nil
}

// blocks decodes gpt-oss's MXFP4 form: base_blocks U8 [..., rows, in/32, 16]
// and base_scales U8 [..., rows, in/32]; the nibbles are the MLX mxfp4
// stream, so the bytes are used as they are.
func (w *Weights) blocks(base string) (Tensor, error) {
	data, info, err := w.bytesOf(base + "_blocks")
	if err != nil {
		return Tensor{}, err
	}
	scales, sinfo, err := w.bytesOf(base + "_scales")
	if err != nil {
		return Tensor{}, w.errf(base+"_blocks", "needs %s_scales: %v", base, err)
	}
	n := len(info.Shape)
	if info.DType != safetensors.U8 || sinfo.DType != safetensors.U8 || n < 3 || info.Shape[n-1] != 16 ||
		len(sinfo.Shape) != n-1 || !sameShape(sinfo.Shape, info.Shape[:n-1]) {
		return Tensor{}, w.errf(base+"_blocks", "%s %v with scales %s %v is not MXFP4 blocks [..., rows, in/32, 16] + [..., rows, in/32]",
			info.DType, info.Shape, sinfo.DType, sinfo.Shape)
	}
	rows := 1
	for _, d := range info.Shape[:n-2] {
		rows *= int(d)
	}
	cols := int(info.Shape[n-2]) * 32
	m := &quant.Matrix{Format: quant.Format{Kind: quant.MXFP4, Bits: 4, GroupSize: 32, Scale: quant.ScaleE8M0},
		Rows: rows, Cols: cols, Data: data, Scales: scales}
	if err := m.Validate(); err != nil {
		return Tensor{}, w.errf(base+"_blocks", "%v", err)
	}
	shape := append(append([]int64(nil), info.Shape[:n-2]...), int64(cols))
	return Tensor{Name: base + "_blocks", M: m, Shape: shape}, nil
}

func scaleType(d safetensors.DType) quant.ScaleType {
	switch d {
	case safetensors.F32:
		return quant.ScaleF32
	case safetensors.F16:
		return quant.ScaleF16
	case safetensors.BF16:
		return quant.ScaleBF16
	case safetensors.U8:
		return quant.ScaleE8M0
	}
	return quant.ScaleNone
}

func quantFormat(mq modelconfig.ModuleQuant, st quant.ScaleType) (quant.Format, error) {
	switch mq.Mode {
	case modelconfig.ModeAffine, "":
		return quant.Format{Kind: quant.Affine, Bits: mq.Bits, GroupSize: mq.GroupSize, Scale: st}, nil
	case modelconfig.ModeMXFP4:
		gs := mq.GroupSize
		if gs == 0 {
			gs = 32
		}
		return quant.Format{Kind: quant.MXFP4, Bits: 4, GroupSize: gs, Scale: st}, nil
	}
	return quant.Format{}, fmt.Errorf("quantization mode %q is not supported by this build (affine and mxfp4 are)", mq.Mode)
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sameLead: a and b agree on every dimension but the last.
func sameLead(a, b []int64) bool {
	return len(a) == len(b) && sameShape(a[:len(a)-1], b[:len(b)-1])
}

// Bind binds m, falling back to a dequantized f32 copy when the backend
// lacks its format (logged: it costs memory).
func (w *Weights) Bind(name string, m *quant.Matrix) (kernels.Weight, error) {
	bw, fell, err := kernels.BindOrDequantize(w.b, m)
	if err != nil {
		return nil, w.errf(name, "bind on %s: %v", w.b.Name(), err)
	}
	if fell {
		w.log.Warn("backend lacks the weight format; using a dequantized f32 copy", "tensor", name, "format", m.Format.String(), "backend", w.b.Name())
	}
	w.bytes += int64(m.Bytes())
	return bw, nil
}

// Linear binds the 2-D weight base (see Matrix) and checks its shape.
func (w *Weights) Linear(base string, out, in int) (kernels.Weight, error) {
	t, err := w.Matrix(base)
	if err != nil {
		return nil, err
	}
	if len(t.Shape) != 2 || (out > 0 && t.M.Rows != out) || (in > 0 && t.M.Cols != in) {
		return nil, w.errf(t.Name, "shape %v, want [%d, %d] from config.json", t.Shape, out, in)
	}
	return w.Bind(t.Name, t.M)
}

// Head binds a model's output head: the weight name ([vocab, hidden], name
// without ".weight") when the checkpoint has it, else the token embedding
// embed when config.json ties them.
func (w *Weights) Head(name string, vocab, hidden int, embed kernels.Weight, tied bool) (kernels.Weight, error) {
	switch {
	case w.Has(name + ".weight"):
		return w.Linear(name, vocab, hidden)
	case tied:
		return embed, nil
	}
	return nil, fmt.Errorf("%s: no %s.weight and tie_word_embeddings is false in config.json", w.Dir, name)
}

// Vector copies the 1-D f32/f16/bf16 tensor name (n elements) into a 1×n
// f32 backend tensor, adding add to every element (for checkpoints that
// store a norm weight centred on zero).
func (w *Weights) Vector(name string, n int, add float32) (kernels.Tensor, error) {
	data, info, err := w.bytesOf(name)
	if err != nil {
		return kernels.Tensor{}, w.missing(name)
	}
	if len(info.Shape) != 1 || int(info.Shape[0]) != n {
		return kernels.Tensor{}, w.errf(name, "shape %v, want [%d]", info.Shape, n)
	}
	var kind quant.Kind
	switch info.DType {
	case safetensors.F32:
		kind = quant.F32
	case safetensors.F16:
		kind = quant.F16
	case safetensors.BF16:
		kind = quant.BF16
	default:
		return kernels.Tensor{}, w.errf(name, "dtype %s, want f32, f16 or bf16", info.DType)
	}
	vals := (&quant.Matrix{Format: quant.Format{Kind: kind}, Rows: 1, Cols: n, Data: data}).Dequantize()
	if add != 0 {
		for i := range vals {
			vals[i] += add
		}
	}
	t, err := w.b.Alloc(kernels.F32, 1, n)
	if err != nil {
		return kernels.Tensor{}, err
	}
	if err := w.b.Write(t, vals); err != nil {
		return kernels.Tensor{}, err
	}
	w.vectors += int64(len(data))
	return t, nil
}

// OptionalVector is Vector for a tensor that may be absent (zero Tensor).
func (w *Weights) OptionalVector(name string, n int) (kernels.Tensor, error) {
	if !w.Has(name) {
		return kernels.Tensor{}, nil
	}
	return w.Vector(name, n, 0)
}
