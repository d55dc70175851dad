// Package kvcache holds the attention state of sequences. A Cache belongs
// to one sequence; its methods fall in two groups:
//
//   - scheduler-facing: Begin reserves room for the next step's tokens (or
//     fails with ErrCacheFull), Commit makes them part of the sequence,
//     Truncate rolls back to a prefix (prefix reuse, speculative rollback),
//     Release frees the memory;
//   - model-facing: Update stores a layer's new keys and values for the step
//     and returns the view attention reads.
//
// Standard is the plain per-layer cache (f32, f16 or bf16 storage, grown on
// demand up to a capacity); Rotating keeps only the window of sliding-window
// layers beside full-attention ones (gpt_oss, gemma4); Hybrid adds the
// recurrent state of linear-attention layers (qwen3_5_moe). Caches that
// cannot cut back to any prefix implement Snapshotter.
package kvcache

import (
	"errors"
	"fmt"

	"github.com/maniac-ai/mach/kernels"
)

// ErrCacheFull is returned by Begin when a step would exceed the capacity.
var ErrCacheFull = errors.New("kv cache full")

// Cache is one sequence's attention state.
type Cache interface {
	// Len is the number of committed tokens.
	Len() int
	// Capacity is the most tokens the cache can hold.
	Capacity() int
	// Begin prepares a step of n new tokens at positions Len() … Len()+n-1.
	Begin(n int) error
	// Update stores layer's keys and values for the step's tokens (k and v
	// have n rows) and returns what attention reads for the step.
	Update(layer int, k, v kernels.Tensor) (View, error)
	// Commit appends the step's tokens to the sequence.
	Commit()
	// Truncate drops every token from position n on (n ≤ Len()).
	Truncate(n int) error
	// Release frees the cache's memory; the cache is unusable afterwards.
	Release()
}

// View is what attention reads for one layer and step.
type View struct {
	// K and V hold at least NumKeys rows of the layer's key and value width.
	K, V kernels.Tensor
	// NumKeys is the number of valid rows.
	NumKeys int
	// KPos gives each key's position; nil means key j is at position j.
	KPos []int32
}

// LayerShape is the key and value width (heads × head dim) of one layer.
type LayerShape struct {
	K, V int
}

// checkBegin makes the checks every cache's Begin starts with: the cache
// is not released, the step has tokens, and the held tokens and the step's
// fit the capacity (else ErrCacheFull).
func checkBegin(released bool, held, n, capacity int) error {
	if released {
		return fmt.Errorf("kvcache: use after Release")
	}
	if n <= 0 {
		return fmt.Errorf("kvcache: step of %d tokens", n)
	}
	if held+n > capacity {
		return fmt.Errorf("%w: %d tokens + %d new exceed the capacity of %d", ErrCacheFull, held, n, capacity)
	}
	return nil
}
