package qwen35moe

import (
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/moe"
)

// MaskExperts removes experts of a MoE layer from routing (their router
// logits become −Inf), so the model computes what the checkpoint pruned to
// the other experts computes. nil or empty removed clears the mask. For
// tests and plan evaluation (mach-reap); serving never masks.
func (m *Model) MaskExperts(layer int, removed []int) error {
	if layer < 0 || layer >= len(m.layers) || m.layers[layer].moe == nil {
		return fmt.Errorf("qwen35moe: layer %d is not a MoE layer", layer)
	}
	blk := m.layers[layer].moe
	if len(removed) == 0 {
		blk.Mask = kernels.Tensor{}
		return nil
	}
	mask, err := moe.NewExpertMask(m.b, m.opts.Experts[layer], removed)
	if err != nil {
		return err
	}
	blk.Mask = mask
	return nil
}
