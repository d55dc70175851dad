package moe

import (
	"fmt"
	"math"

	"github.com/maniac-ai/mach/kernels"
)

// NewExpertMask returns a Block.Mask for a layer of n experts that removes
// the experts listed: 0 for the others and −Inf for them, added to the
// router logits. A masked expert is never chosen and drops out of a softmax
// over all experts, so a masked model computes what the checkpoint pruned
// to the other experts (mach-prune) computes; tests and mach-reap use it to
// evaluate a plan without writing the checkpoint.
func NewExpertMask(b kernels.Backend, n int, removed []int) (kernels.Tensor, error) {
	vals := make([]float32, n)
	for _, e := range removed {
		if e < 0 || e >= n {
			return kernels.Tensor{}, fmt.Errorf("moe: cannot mask expert %d of %d", e, n)
		}
		vals[e] = float32(math.Inf(-1))
	}
	t, err := b.Alloc(kernels.F32, 1, n)
	if err != nil {
		return kernels.Tensor{}, err
	}
	if err := b.Write(t, vals); err != nil {
		return kernels.Tensor{}, err
	}
	return t, nil
}

// SetMask masks the experts listed out of the block's routing for a layer
// of n experts (see NewExpertMask); nil or empty removed clears the mask.
// The architectures' MaskExperts call it for tests and plan evaluation
// (mach-reap); serving never masks.
func (m *Block) SetMask(b kernels.Backend, n int, removed []int) error {
	if len(removed) == 0 {
		m.Mask = kernels.Tensor{}
		return nil
	}
	mask, err := NewExpertMask(b, n, removed)
	if err != nil {
		return err
	}
	m.Mask = mask
	return nil
}
