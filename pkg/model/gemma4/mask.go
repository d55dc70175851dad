package gemma4

import "fmt"

// MaskExperts removes experts of a MoE layer from routing (their router
// logits become −Inf), so the model computes what the checkpoint pruned to
// the other experts computes. nil or empty removed clears the mask. For
// tests and plan evaluation (mach-reap); serving never masks.
func (m *Model) MaskExperts(layer int, removed []int) error {
	if layer < 0 || layer >= len(m.layers) || m.layers[layer].moe == nil {
		return fmt.Errorf("gemma4: layer %d is not a MoE layer", layer)
	}
	return m.layers[layer].moe.SetMask(m.b, m.opts.Experts, removed)
}
