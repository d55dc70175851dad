// Package cpu is mach's CPU compute backend: pure Go, parallel across cores
// on a worker pool sized to GOMAXPROCS, accumulating in f32. Every operation
// has a plain-Go reference path; on amd64 with AVX2 and FMA the hot loops
// (dot products, fused dequantize-dot for MLX affine weights, f16 key/value
// reads) run in Go assembly unless the noasm build tag is set or
// Options.Reference is true. Both paths are batch-invariant: every output
// row of a matrix product is computed by the same sequence of operations
// whatever the number of rows.
package cpu

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/quant"
)

// Options configure a CPU backend.
type Options struct {
	// Threads is the number of workers; 0 means GOMAXPROCS.
	Threads int
	// Reference forces the plain-Go paths (the conformance reference).
	Reference bool
}

// Backend is the CPU backend. Operations run synchronously on the calling
// goroutine and the worker pool.
type Backend struct {
	pool    *pool
	simd    bool
	scratch []scratch
	prepBuf []float32  // prepared matmul inputs, filled before each dispatch
	kvWide  []float32  // 16-bit keys and values widened for multi-query attention
	mu      sync.Mutex // guards err
	err     error
}

// scratch is per-worker working memory, grown on demand.
type scratch struct {
	f32 []float32
	aux []float32
	acc []float32
	pad []byte
}

func (s *scratch) accFloats(n int) []float32 {
	if cap(s.acc) < n {
		s.acc = make([]float32, n)
	}
	return s.acc[:n]
}

func (s *scratch) floats(n int) []float32 {
	if cap(s.f32) < n {
		s.f32 = make([]float32, n)
	}
	return s.f32[:n]
}

func (s *scratch) auxFloats(n int) []float32 {
	if cap(s.aux) < n {
		s.aux = make([]float32, n)
	}
	return s.aux[:n]
}

// New starts a CPU backend.
func New(opts Options) *Backend {
	n := opts.Threads
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return &Backend{
		pool:    newPool(n),
		simd:    !opts.Reference && haveSIMD,
		scratch: make([]scratch, n),
	}
}

// Name implements kernels.Backend.
func (b *Backend) Name() string {
	if b.simd {
		return "cpu+avx2"
	}
	return "cpu"
}

// Threads returns the number of workers.
func (b *Backend) Threads() int { return b.pool.n }

// Capabilities implements kernels.Backend.
func (b *Backend) Capabilities() kernels.Capabilities {
	return kernels.Capabilities{
		Ops: []kernels.Op{
			kernels.OpGroupedMatMul, kernels.OpAttentionSinks, kernels.OpAttentionSoftcap,
			kernels.OpSlidingWindow, kernels.OpKeyPositions, kernels.OpRoPEInterleaved,
			kernels.OpSiLULimited, kernels.OpGeLUTanh, kernels.OpRouteSigmoid, kernels.OpBatchInvariant,
			kernels.OpSparseAttention, // sparse.go
		},
		Formats: []quant.Format{
			{Kind: quant.F32}, {Kind: quant.F16}, {Kind: quant.BF16},
			{Kind: quant.Affine}, // any bits, group size and scale type quant supports
			{Kind: quant.MXFP4},
			{Kind: quant.FP8}, // E4M3 with any group size and scale type (fp8.go)
		},
		CacheTypes: []kernels.DType{kernels.F32, kernels.F16, kernels.BF16},
	}
}

// Close stops the workers.
func (b *Backend) Close() error {
	b.pool.stop()
	return nil
}

// Sync implements kernels.Backend: CPU work is already done, so it only
// reports and clears the first recorded error.
func (b *Backend) Sync() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.err
	b.err = nil
	return err
}

func (b *Backend) fail(op string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = fmt.Errorf("cpu %s: %w", op, err)
	}
}

func (b *Backend) failf(op, format string, args ...any) {
	b.fail(op, fmt.Errorf(format, args...))
}

// buffer is CPU memory: f32 values or 16-bit storage.
type buffer struct {
	dt  kernels.DType
	f32 []float32
	u16 []uint16
}

func (x *buffer) DType() kernels.DType { return x.dt }

func (x *buffer) Len() int {
	if x.dt == kernels.F32 {
		return len(x.f32)
	}
	return len(x.u16)
}

// Alloc implements kernels.Backend.
func (b *Backend) Alloc(dt kernels.DType, rows, cols int) (kernels.Tensor, error) {
	if rows < 0 || cols < 0 {
		return kernels.Tensor{}, fmt.Errorf("cpu alloc: shape %d×%d", rows, cols)
	}
	buf := &buffer{dt: dt}
	switch dt {
	case kernels.F32:
		buf.f32 = make([]float32, rows*cols)
	case kernels.F16, kernels.BF16:
		buf.u16 = make([]uint16, rows*cols)
	default:
		return kernels.Tensor{}, fmt.Errorf("cpu alloc: %w: dtype %s", kernels.ErrUnsupported, dt)
	}
	return kernels.Tensor{Buf: buf, Rows: rows, Cols: cols, Stride: cols}, nil
}

func bufOf(t kernels.Tensor) (*buffer, error) {
	if err := t.Check(); err != nil {
		return nil, err
	}
	buf, ok := t.Buf.(*buffer)
	if !ok {
		return nil, fmt.Errorf("tensor from another backend (%T)", t.Buf)
	}
	return buf, nil
}

// f32Rows returns accessors for an f32 tensor.
func f32Of(t kernels.Tensor) ([]float32, error) {
	buf, err := bufOf(t)
	if err != nil {
		return nil, err
	}
	if buf.dt != kernels.F32 {
		return nil, fmt.Errorf("%v: want f32", t)
	}
	return buf.f32, nil
}

func row(data []float32, t kernels.Tensor, i int) []float32 {
	o := t.Off + i*t.Stride
	return data[o : o+t.Cols : o+t.Cols]
}

// Write implements kernels.Backend.
func (b *Backend) Write(t kernels.Tensor, src []float32) error {
	buf, err := bufOf(t)
	if err != nil {
		return err
	}
	if len(src) < t.Elems() {
		return fmt.Errorf("cpu write: %d values for %v", len(src), t)
	}
	for i := 0; i < t.Rows; i++ {
		s := src[i*t.Cols : (i+1)*t.Cols]
		o := t.Off + i*t.Stride
		switch buf.dt {
		case kernels.F32:
			copy(buf.f32[o:o+t.Cols], s)
		case kernels.F16:
			for j, v := range s {
				buf.u16[o+j] = quant.F32ToF16(v)
			}
		case kernels.BF16:
			for j, v := range s {
				buf.u16[o+j] = quant.F32ToBF16(v)
			}
		}
	}
	return nil
}

// Read implements kernels.Backend.
func (b *Backend) Read(dst []float32, t kernels.Tensor) error {
	if err := b.Sync(); err != nil {
		return err
	}
	buf, err := bufOf(t)
	if err != nil {
		return err
	}
	if len(dst) < t.Elems() {
		return fmt.Errorf("cpu read: room for %d values, %v has %d", len(dst), t, t.Elems())
	}
	for i := 0; i < t.Rows; i++ {
		d := dst[i*t.Cols : (i+1)*t.Cols]
		o := t.Off + i*t.Stride
		switch buf.dt {
		case kernels.F32:
			copy(d, buf.f32[o:o+t.Cols])
		case kernels.F16:
			for j := range d {
				d[j] = quant.F16ToF32(buf.u16[o+j])
			}
		case kernels.BF16:
			for j := range d {
				d[j] = quant.BF16ToF32(buf.u16[o+j])
			}
		}
	}
	return nil
}

var errShape = errors.New("shape mismatch")

func sameShape(ts ...kernels.Tensor) error {
	for _, t := range ts[1:] {
		if t.Rows != ts[0].Rows || t.Cols != ts[0].Cols {
			return fmt.Errorf("%w: %v vs %v", errShape, ts[0], t)
		}
	}
	return nil
}
