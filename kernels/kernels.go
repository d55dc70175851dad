// Package kernels is mach's compute interface: the operations Mixture-of-
// Experts inference needs, implemented by interchangeable backends (kernels/cpu
// now; CUDA and Metal later, behind build tags).
//
// The interface is shaped for accelerators even though the CPU backend runs
// every operation at once:
//
//   - Activations live in backend-owned buffers (Alloc); host data moves only
//     through Write and Read. A Tensor is a 2-D view (rows × cols, row stride)
//     of a buffer, so splitting heads, rows of a ragged batch or the halves of a
//     fused projection costs nothing.
//   - Weights are bound once (Bind): the CPU backend keeps the quant.Matrix
//     bytes in place (zero-copy from the mmapped checkpoint); a GPU backend
//     would upload them.
//   - Operations are enqueued and may run asynchronously. They do not return
//     errors: a backend records the first failure and Sync (or Read) reports
//     it, as a GPU stream would. Read and Route synchronize.
//   - Backends advertise what they implement (Capabilities); optional fused
//     operations are separate interfaces (GroupedMatMuler) and the package-
//     level functions here compose a fallback when a backend lacks one.
//
// A Backend is used by one goroutine at a time (the engine's step loop).
// Accumulation is in f32 everywhere.
package kernels

import (
	"errors"
	"fmt"

	"github.com/maniac-ai/mach/pkg/quant"
)

// DType is the element type of an activation buffer.
type DType uint8

// Activation buffer element types. Ops compute in f32; F16 and BF16 are
// storage types (the KV cache) that Copy converts to and Attention reads.
const (
	F32 DType = iota + 1
	F16
	BF16
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size returns the bytes per element.
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	}
	return 0
}

// Buffer is backend-owned memory for activations. Its contents are reached
// only through Backend methods.
type Buffer interface {
	DType() DType
	// Len is the number of elements.
	Len() int
}

// Tensor is a 2-D view of a Buffer: Rows rows of Cols elements, row i
// starting at element Off + i·Stride.
type Tensor struct {
	Buf    Buffer
	Off    int
	Rows   int
	Cols   int
	Stride int
}

// IsZero reports whether t is the zero Tensor (no buffer), which optional
// operands use to mean "absent".
func (t Tensor) IsZero() bool { return t.Buf == nil }

// DType returns the element type of t's buffer.
func (t Tensor) DType() DType { return t.Buf.DType() }

// Contiguous reports whether the rows follow each other without gaps.
func (t Tensor) Contiguous() bool { return t.Stride == t.Cols || t.Rows <= 1 }

// RowRange returns rows [a, b).
func (t Tensor) RowRange(a, b int) Tensor {
	return Tensor{Buf: t.Buf, Off: t.Off + a*t.Stride, Rows: b - a, Cols: t.Cols, Stride: t.Stride}
}

// Row returns row i as a 1-row tensor.
func (t Tensor) Row(i int) Tensor { return t.RowRange(i, i+1) }

// ColRange returns columns [a, b) of every row.
func (t Tensor) ColRange(a, b int) Tensor {
	return Tensor{Buf: t.Buf, Off: t.Off + a, Rows: t.Rows, Cols: b - a, Stride: t.Stride}
}

// Reshape views a contiguous tensor as rows × cols with the same element
// count (e.g. [T, heads·dim] as [T·heads, dim]). It panics on a misuse, which
// is a programming error, never a consequence of input data.
func (t Tensor) Reshape(rows, cols int) Tensor {
	if !t.Contiguous() || rows*cols != t.Rows*t.Cols {
		panic(fmt.Sprintf("kernels: cannot reshape %v to %d×%d", t, rows, cols))
	}
	return Tensor{Buf: t.Buf, Off: t.Off, Rows: rows, Cols: cols, Stride: cols}
}

// Elems returns Rows·Cols.
func (t Tensor) Elems() int { return t.Rows * t.Cols }

func (t Tensor) String() string {
	if t.Buf == nil {
		return "tensor(nil)"
	}
	return fmt.Sprintf("tensor(%s %d×%d off %d stride %d)", t.Buf.DType(), t.Rows, t.Cols, t.Off, t.Stride)
}

// Check reports whether t fits inside its buffer with a sane stride.
func (t Tensor) Check() error {
	if t.Buf == nil {
		return errors.New("kernels: nil tensor")
	}
	if t.Rows < 0 || t.Cols < 0 || t.Off < 0 || (t.Rows > 1 && t.Stride < t.Cols) {
		return fmt.Errorf("kernels: bad view %v", t)
	}
	if t.Rows > 0 && t.Off+(t.Rows-1)*t.Stride+t.Cols > t.Buf.Len() {
		return fmt.Errorf("kernels: view %v overruns its buffer of %d", t, t.Buf.Len())
	}
	return nil
}

// Weight is a matrix bound to a backend: Rows output features, Cols input
// features (PyTorch [out, in]).
type Weight interface {
	Rows() int
	Cols() int
	Format() quant.Format
}

// Activation selects a gated activation: out = act(gate) · up.
type Activation struct {
	Kind ActKind
	// Alpha scales the sigmoid argument of SiLULimited (gpt-oss 1.702; 1
	// for plain SiLU).
	Alpha float32
	// Limit clamps gate from above and up to ±Limit (0 = no clamp).
	Limit float32
	// UpOffset is added to up before the product (gpt-oss: 1).
	UpOffset float32
}

// ActKind is the activation family.
type ActKind uint8

// The activation families (see registry.Activation).
const (
	// SiLU: silu(gate)·up (plain SwiGLU).
	SiLU ActKind = iota + 1
	// SiLULimited: g=min(gate,L), u=clamp(up,±L); g·σ(α·g)·(u+UpOffset).
	SiLULimited
	// GeLUTanh: gelu_tanh(gate)·up (GeGLU).
	GeLUTanh
)

// RoPE describes a rotary embedding applied to each head of a row.
type RoPE struct {
	// HeadDim is the size of one head; a row holds Cols/HeadDim heads.
	HeadDim int
	// Dims is how many dimensions rotate (≤ HeadDim); they start at Offset
	// within the head (0 = leading dims, HeadDim-Dims = trailing dims).
	Dims   int
	Offset int
	// Interleaved pairs (2j, 2j+1); otherwise half-split pairs (j, j+Dims/2).
	Interleaved bool
	// InvFreq holds Dims/2 inverse frequencies (YaRN, proportional and
	// other scalings are folded in by the caller; see package rope).
	InvFreq []float32
	// Scale multiplies cos and sin (YaRN's attention factor; 0 means 1).
	Scale float32
	// Inverse rotates by the negative angle.
	Inverse bool
}

// Attention describes scaled-dot-product attention of a block of query rows
// over a sequence's keys and values.
type Attention struct {
	Heads, KVHeads, HeadDim int
	// Scale multiplies q·k (usually 1/√HeadDim).
	Scale float32
	// QPos[i] is the position of query row i.
	QPos []int32
	// NumKeys is how many key/value rows are valid.
	NumKeys int
	// KPos[j] is the position of key j; nil means key j is at position j.
	KPos []int32
	// Causal masks keys after the query's position.
	Causal bool
	// Window, when positive, limits a query at p to keys at positions
	// > p-Window (exactly Window keys including itself).
	Window int
	// Sinks, when not zero, is a 1×Heads f32 tensor of per-head sink logits
	// that join the softmax with no value.
	Sinks Tensor
	// Softcap, when positive, maps scores s to Softcap·tanh(s/Softcap).
	Softcap float32
}

// Routing describes top-k expert selection from router logits.
type Routing struct {
	// K experts per token.
	K int
	// Score turns logits into scores.
	Score ScoreFunc
	// Bias, when not zero (1×E f32), is added to the scores for selection
	// only (DeepSeek's e_score_correction_bias).
	Bias Tensor
	// Normalize divides the selected weights by their sum.
	Normalize bool
	// Scale multiplies the final weights (0 means 1).
	Scale float32
}

// ScoreFunc maps router logits to scores.
type ScoreFunc uint8

// Router scoring functions.
const (
	// SoftmaxAll: softmax over all experts, then top-k (Qwen, DeepSeek-V3).
	SoftmaxAll ScoreFunc = iota + 1
	// SoftmaxTopK: top-k on logits, then softmax over the k (gpt-oss).
	SoftmaxTopK
	// Sigmoid scores (DeepSeek-V3 noaux_tc).
	Sigmoid
	// SqrtSoftplus scores (DeepSeek-V4).
	SqrtSoftplus
)

// Backend is a compute backend. Operation arguments must be well-formed
// views; a backend records the first problem and reports it from Sync.
type Backend interface {
	// Name identifies the backend ("cpu", "cuda:0", …).
	Name() string
	// Capabilities says what the backend implements.
	Capabilities() Capabilities

	// Alloc returns a rows×cols tensor in new backend memory (contents
	// unspecified).
	Alloc(dt DType, rows, cols int) (Tensor, error)
	// Write copies host values into t, converting to t's element type.
	Write(t Tensor, src []float32) error
	// Read waits for queued work and copies t into dst (len ≥ Elems).
	Read(dst []float32, t Tensor) error
	// Bind prepares a weight for MatMul and Embed. The backend may keep
	// references to m's bytes until Close; it returns an error wrapping
	// ErrUnsupported for formats it lacks (see BindOrDequantize).
	Bind(m *quant.Matrix) (Weight, error)
	// Sync waits for queued work and returns (then clears) the first error
	// an operation recorded.
	Sync() error
	// Close releases the backend's resources and workers.
	Close() error

	// MatMul computes dst[i] = W · x[i] for every row i (x: rows×W.Cols,
	// dst: rows×W.Rows; f32).
	MatMul(dst, x Tensor, w Weight)
	// Embed writes row ids[i] of table into dst[i] (dequantized).
	Embed(dst Tensor, table Weight, ids []int32)
	// RMSNorm writes x/rms(x)·w for each row; w is a 1×Cols f32 tensor or
	// zero for an unweighted norm; addOne uses (1+w).
	RMSNorm(dst, x, w Tensor, eps float32, addOne bool)
	// RoPE rotates each head of each row of x in place; pos[i] is row i's
	// position.
	RoPE(x Tensor, pos []int32, r RoPE)
	// Attention writes softmax(q·kᵀ·scale + mask)·v for each query row
	// into dst (rows × Heads·HeadDim); k and v are NumKeys+ rows ×
	// KVHeads·HeadDim in F32, F16 or BF16.
	Attention(dst, q, k, v Tensor, a Attention)
	// Activate writes act(gate)·up elementwise.
	Activate(dst, gate, up Tensor, a Activation)
	// Add writes a+b; Mul writes a·b, elementwise. b has a's shape or one
	// row, which is broadcast to every row (biases, per-channel scales).
	Add(dst, a, b Tensor)
	Mul(dst, a, b Tensor)
	// Fill sets every element of dst to v.
	Fill(dst Tensor, v float32)
	// Scale writes x·s.
	Scale(dst, x Tensor, s float32)
	// Softcap writes c·tanh(x/c).
	Softcap(dst, x Tensor, c float32)
	// Softmax writes the row-wise softmax of x.
	Softmax(dst, x Tensor)
	// Copy converts src into dst (same shape, any element types).
	Copy(dst, src Tensor)
	// Gather writes src[rows[i]] into dst[i].
	Gather(dst, src Tensor, rows []int32)
	// ScatterAdd adds w[i]·src[i] into dst[rows[i]], in order of i.
	ScatterAdd(dst, src Tensor, rows []int32, w []float32)
	// Route selects r.K experts per row of logits (rows × E) and writes
	// the chosen expert ids and weights, row-major, into idx and weight
	// (len ≥ rows·K). It synchronizes: the results are on the host.
	Route(logits Tensor, r Routing, idx []int32, weight []float32) error
}

// GroupedMatMuler is implemented by backends with a fused grouped expert
// matmul: for every slot s in [offs[g], offs[g+1]), dst[s] = ws[g]·x[r(s)]
// where r(s) = rows[s], or s when rows is nil. Each expert's weights are
// read once per step however many tokens chose it, and the tokens need not
// be gathered first.
type GroupedMatMuler interface {
	MatMulGrouped(dst, x Tensor, rows []int32, ws []Weight, offs []int)
}

// MatMulGrouped runs the grouped expert matmul on b, composing it from
// Gather and MatMul when b has no fused version (the composition needs a
// scratch tensor for gathered rows: scratch(n) returns one of n rows).
func MatMulGrouped(b Backend, dst, x Tensor, rows []int32, ws []Weight, offs []int, scratch func(n int) (Tensor, error)) error {
	if g, ok := b.(GroupedMatMuler); ok && b.Capabilities().Has(OpGroupedMatMul) {
		g.MatMulGrouped(dst, x, rows, ws, offs)
		return nil
	}
	in := x
	if rows != nil {
		t, err := scratch(len(rows))
		if err != nil {
			return err
		}
		b.Gather(t, x, rows)
		in = t
	}
	for i, w := range ws {
		a, e := offs[i], offs[i+1]
		if a == e {
			continue
		}
		b.MatMul(dst.RowRange(a, e), in.RowRange(a, e), w)
	}
	return nil
}

// MultiMatMuler is implemented by backends that run several products of
// one input at once: dsts[i] = ws[i]·x for every row (q, k and v of a layer;
// gate and up of an MLP), in one dispatch.
type MultiMatMuler interface {
	MatMulMulti(dsts []Tensor, x Tensor, ws []Weight)
}

// MatMulMulti runs the products on b, one MatMul each when b has no fused
// version.
func MatMulMulti(b Backend, dsts []Tensor, x Tensor, ws []Weight) {
	if m, ok := b.(MultiMatMuler); ok {
		m.MatMulMulti(dsts, x, ws)
		return
	}
	for i, w := range ws {
		b.MatMul(dsts[i], x, w)
	}
}

// ErrUnsupported is wrapped by errors about operations, formats or operand
// types a backend does not implement.
var ErrUnsupported = errors.New("not supported by this backend")

// BindOrDequantize binds m on b, falling back to a dequantized f32 copy
// when b lacks m's format (the composed fallback for weights; it costs
// memory, so callers log it).
func BindOrDequantize(b Backend, m *quant.Matrix) (w Weight, fellBack bool, err error) {
	w, err = b.Bind(m)
	if err == nil || !errors.Is(err, ErrUnsupported) {
		return w, false, err
	}
	f := quant.FromPlain(quant.F32, m.Dequantize(), m.Rows, m.Cols)
	w, err = b.Bind(f)
	return w, err == nil, err
}
