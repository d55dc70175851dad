package model

import (
	"fmt"

	"github.com/maniac-ai/mach/kernels"
)

// Workspace hands out named activation buffers that persist across steps,
// so a forward pass allocates nothing once warm. Buffers with different
// names never alias; asking for a name again returns the same memory.
type Workspace struct {
	b    kernels.Backend
	bufs map[string]kernels.Tensor
	// host scratch, by name
	i32 map[string][]int32
	f32 map[string][]float32
}

// NewWorkspace returns an empty workspace on b.
func NewWorkspace(b kernels.Backend) *Workspace {
	return &Workspace{b: b, bufs: map[string]kernels.Tensor{}, i32: map[string][]int32{}, f32: map[string][]float32{}}
}

// Get returns a rows×cols f32 tensor named name (contents unspecified).
func (w *Workspace) Get(name string, rows, cols int) (kernels.Tensor, error) {
	n := rows * cols
	t, ok := w.bufs[name]
	if !ok || t.Buf.Len() < n {
		size := n
		if ok {
			size = max(n, t.Buf.Len()+t.Buf.Len()/2)
		}
		nt, err := w.b.Alloc(kernels.F32, 1, size)
		if err != nil {
			return kernels.Tensor{}, fmt.Errorf("workspace %s: %w", name, err)
		}
		w.bufs[name] = nt
		t = nt
	}
	return kernels.Tensor{Buf: t.Buf, Rows: rows, Cols: cols, Stride: cols}, nil
}

// Int32s returns host scratch of n int32 named name.
func (w *Workspace) Int32s(name string, n int) []int32 {
	s := w.i32[name]
	if cap(s) < n {
		s = make([]int32, n)
	}
	s = s[:n]
	w.i32[name] = s
	return s
}

// Float32s returns host scratch of n float32 named name.
func (w *Workspace) Float32s(name string, n int) []float32 {
	s := w.f32[name]
	if cap(s) < n {
		s = make([]float32, n)
	}
	s = s[:n]
	w.f32[name] = s
	return s
}

// Bytes returns the memory the device buffers take.
func (w *Workspace) Bytes() int {
	n := 0
	for _, t := range w.bufs {
		n += t.Buf.Len() * t.Buf.DType().Size()
	}
	return n
}
