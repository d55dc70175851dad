package kernels

import (
	"errors"
	"fmt"
)

// OpSparseAttention: the backend implements SparseAttender natively.
const OpSparseAttention Op = "sparse_attention"

// SparseAttention describes attention in which every query row has its own
// list of key rows, as DeepSeek-V4 attends to a sliding window plus the
// compressed entries its lightning indexer picks (the reference's
// sparse_attn over top-k indices). There is no causal or window mask: the
// list is the mask.
type SparseAttention struct {
	Heads, KVHeads, HeadDim int
	// Scale multiplies q·k.
	Scale float32
	// Keys holds PerRow key row indices for each query row, row-major; an
	// index below zero is an empty slot. Keys are summed in list order.
	Keys   []int32
	PerRow int
	// Sinks, when not zero, is a 1×Heads f32 tensor of per-head sink
	// logits that join the softmax with no value.
	Sinks Tensor
}

// SparseAttender is implemented by backends with a native sparse
// attention: dst[i] = softmax(q[i]·k[Keys(i)]ᵀ·Scale, sink)·v[Keys(i)] for
// every query row i (dst and q: rows × Heads·HeadDim; k and v: rows of
// KVHeads·HeadDim in F32, F16 or BF16).
type SparseAttender interface {
	SparseAttention(dst, q, k, v Tensor, a SparseAttention)
}

// Validate checks a against the operand shapes.
func (a SparseAttention) Validate(dst, q, k, v Tensor) error {
	switch {
	case a.Heads <= 0 || a.KVHeads <= 0 || a.HeadDim <= 0 || a.Heads%a.KVHeads != 0:
		return fmt.Errorf("sparse attention: heads %d / kv heads %d / head dim %d", a.Heads, a.KVHeads, a.HeadDim)
	case q.Cols != a.Heads*a.HeadDim || dst.Cols != q.Cols || dst.Rows != q.Rows ||
		k.Cols != a.KVHeads*a.HeadDim || v.Cols != k.Cols:
		return fmt.Errorf("sparse attention: dst %v, q %v, k %v, v %v for %d×%d / %d×%d heads", dst, q, k, v, a.Heads, a.HeadDim, a.KVHeads, a.HeadDim)
	case a.PerRow < 0 || len(a.Keys) != q.Rows*a.PerRow:
		return fmt.Errorf("sparse attention: %d key indices for %d rows of %d", len(a.Keys), q.Rows, a.PerRow)
	}
	for _, j := range a.Keys {
		if int(j) >= k.Rows || int(j) >= v.Rows {
			return fmt.Errorf("sparse attention: key row %d outside k %v, v %v", j, k, v)
		}
	}
	return nil
}

// ErrSparseFallback is wrapped when the composed sparse attention cannot
// run (its gathers need f32 keys and values).
var ErrSparseFallback = errors.New("sparse attention fallback needs f32 keys and values")

// SparseAttend runs sparse attention on b. Without a native one it gathers
// each query row's keys and values into scratch (scratch(n) returns a
// 2n×k.Cols f32 tensor) and runs Attention on the row alone with no mask,
// which needs f32 k and v.
func SparseAttend(b Backend, dst, q, k, v Tensor, a SparseAttention, scratch func(n int) (Tensor, error)) error {
	if err := a.Validate(dst, q, k, v); err != nil {
		return err
	}
	if s, ok := b.(SparseAttender); ok && b.Capabilities().Has(OpSparseAttention) {
		s.SparseAttention(dst, q, k, v, a)
		return nil
	}
	if k.DType() != F32 || v.DType() != F32 {
		return fmt.Errorf("%w (k %s, v %s): %w", ErrSparseFallback, k.DType(), v.DType(), ErrUnsupported)
	}
	for i := 0; i < q.Rows; i++ {
		var ids []int32
		for _, j := range a.Keys[i*a.PerRow : (i+1)*a.PerRow] {
			if j >= 0 {
				ids = append(ids, j)
			}
		}
		if len(ids) == 0 {
			b.Fill(dst.Row(i), 0)
			continue
		}
		buf, err := scratch(len(ids))
		if err != nil {
			return err
		}
		kg, vg := buf.RowRange(0, len(ids)), buf.RowRange(len(ids), 2*len(ids))
		b.Gather(kg, k, ids)
		if v == k {
			vg = kg
		} else {
			b.Gather(vg, v, ids)
		}
		b.Attention(dst.Row(i), q.Row(i), kg, vg, Attention{
			Heads: a.Heads, KVHeads: a.KVHeads, HeadDim: a.HeadDim, Scale: a.Scale,
			QPos: []int32{0}, NumKeys: len(ids), Sinks: a.Sinks,
		})
	}
	return nil
}
