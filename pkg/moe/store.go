// Package moe is the Mixture-of-Experts machinery the architectures share:
// routed experts reached only through a Store (Resident now; an SSD-streaming
// store with a byte-budgeted cache and prefetch plugs in behind the same
// interface), binding of the checkpoint layouts (fused gate_up, MLX stacked
// switch_mlp, per-expert tensors) to one in-memory Expert, and the Block
// that routes a batch's tokens, groups them by expert and runs each expert
// once per step.
package moe

import (
	"context"
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/model"
)

// Expert is one routed expert's weights, bound to a backend. Either GateUp
// (gate rows first, then up rows; or alternating when Interleaved) or Gate
// and Up are set.
type Expert struct {
	GateUp     kernels.Weight
	Gate, Up   kernels.Weight
	Down       kernels.Weight
	GateUpBias kernels.Tensor // 1×2I, optional (gpt-oss), ordered like GateUp's rows
	// GateBias and UpBias are the biases of a separate Gate and Up (1×I,
	// optional: gpt-oss in MLX's split form).
	GateBias, UpBias kernels.Tensor
	DownBias         kernels.Tensor // 1×H, optional
	// Interleaved: GateUp's rows alternate gate and up (even = gate), as
	// gpt-oss stores them; the activation reads the pairs in place.
	Interleaved bool
}

// Width returns the expert's intermediate size.
func (e *Expert) Width() int {
	if e.GateUp != nil {
		return e.GateUp.Rows() / 2
	}
	return e.Gate.Rows()
}

// Bytes returns the stored size of the expert's matrices.
func (e *Expert) Bytes() int64 {
	var n int64
	for _, w := range []kernels.Weight{e.GateUp, e.Gate, e.Up, e.Down} {
		if w != nil {
			n += model.WeightBytes(w)
		}
	}
	return n
}

// Store gives the MoE blocks their routed experts. A streaming store may
// load experts from disk on demand; Prefetch lets a block announce what it
// will need before it needs it.
type Store interface {
	// Experts returns the number of routed experts of layer (0 if the layer
	// has none).
	Experts(layer int) int
	// Prefetch announces that layer will soon need experts. It is a hint
	// and returns without waiting.
	Prefetch(ctx context.Context, layer int, experts []int)
	// Acquire returns the weights of experts (in the same order), loading
	// them if needed. They stay valid until Release with the same ids.
	Acquire(ctx context.Context, layer int, experts []int) ([]*Expert, error)
	// Release ends an Acquire.
	Release(layer int, experts []int)
	// Close releases the store.
	Close() error
}

// Resident is a Store whose experts are all bound up front (zero-copy
// views of the mapped checkpoint on the CPU backend).
type Resident struct {
	layers map[int][]*Expert
}

// NewResident returns a store over experts[layer][expert].
func NewResident(layers map[int][]*Expert) *Resident { return &Resident{layers: layers} }

// Experts implements Store.
func (r *Resident) Experts(layer int) int { return len(r.layers[layer]) }

// Prefetch implements Store; everything is resident.
func (r *Resident) Prefetch(context.Context, int, []int) {}

// Acquire implements Store.
func (r *Resident) Acquire(_ context.Context, layer int, experts []int) ([]*Expert, error) {
	all := r.layers[layer]
	out := make([]*Expert, len(experts))
	for i, e := range experts {
		if e < 0 || e >= len(all) {
			return nil, fmt.Errorf("moe: layer %d has no expert %d (of %d)", layer, e, len(all))
		}
		out[i] = all[e]
	}
	return out, nil
}

// Release implements Store.
func (r *Resident) Release(int, []int) {}

// Close implements Store.
func (r *Resident) Close() error { return nil }

// Bytes returns the stored size of every expert.
func (r *Resident) Bytes() int64 {
	var n int64
	for _, l := range r.layers {
		for _, e := range l {
			n += e.Bytes()
		}
	}
	return n
}

// UseStore gives every block its expert store — store, or when that is nil
// a resident store over the experts bound from the checkpoint — and checks
// that the store holds as many experts per layer as config.json says
// (want). blocks[i] is layer i's block, nil on a layer without one; dir
// names the checkpoint in the error. The store comes back with an error
// too, as the model owns it from here.
func UseStore(dir string, store Store, resident map[int][]*Expert, blocks []*Block, want func(layer int) int) (Store, error) {
	if store == nil {
		store = NewResident(resident)
	}
	for i, blk := range blocks {
		if blk == nil {
			continue
		}
		blk.Store = store
		if got := store.Experts(i); got != want(i) {
			return store, fmt.Errorf("%s: layer %d has %d experts in the store, config.json says %d", dir, i, got, want(i))
		}
	}
	return store, nil
}
