// Package model is what every architecture package shares: the Model
// interface the engine drives, the ragged Batch a forward step takes, the
// Step geometry derived from it, a reusable Workspace of activation
// buffers, the Weights loader that binds checkpoint tensors to a backend
// (zero-copy from the mmapped safetensors, any format pkg/quant knows), and
// the small layers (Linear, MLP) the architectures wire together. Attention
// lives in model/attention, rotary parameters in model/rope, the MoE block
// and expert stores in pkg/moe.
//
// An architecture package (model/qwen3moe is the pattern) provides
// Load(ctx, dir, cfg, backend, opts) returning a Model: it decodes its own
// options from the config, binds weights by name and wires the blocks.
package model

import (
	"context"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// Model is a loaded architecture the engine can step.
type Model interface {
	// Info describes the model.
	Info() Info
	// NewCache returns an empty per-sequence cache for up to capacity
	// tokens, stored as dt.
	NewCache(capacity int, dt kernels.DType) (kvcache.Cache, error)
	// Forward runs one step over a batch of sequences: it appends every
	// sequence's tokens to its cache and returns the logits asked for. On
	// error no cache changes.
	Forward(ctx context.Context, batch *Batch) (*Output, error)
	// Close releases the model's weights and buffers.
	Close() error
}

// Info describes a loaded model.
type Info struct {
	// ModelType is config.json's model_type.
	ModelType string
	Vocab     int
	Layers    int
	Hidden    int
	// MaxContext is max_position_embeddings.
	MaxContext int
	// WeightBytes is the size of the bound weights; ActiveBytes the bytes
	// one decoded token reads (attention, the top-k experts, the head).
	WeightBytes int64
	ActiveBytes int64
	// Backend names the compute backend.
	Backend string
}

// Logits says which positions of a sequence need logits.
type Logits uint8

// Logits modes.
const (
	// NoLogits: the step only fills the cache (a prefill chunk).
	NoLogits Logits = iota
	// LastLogits: the last token's logits (decoding).
	LastLogits
	// AllLogits: every token's logits (scoring, parity tests).
	AllLogits
)

// Seq is one sequence's share of a step: new tokens appended after the
// tokens its cache holds.
type Seq struct {
	Tokens []int32
	Cache  kvcache.Cache
	Logits Logits
}

// Batch is a ragged batch: prefill chunks and decode steps of different
// sequences together.
type Batch struct {
	Seqs []Seq
}

// Output holds the logits a step produced.
type Output struct {
	// Logits[i] is sequence i's logits, row-major [rows, Vocab]: one row
	// for LastLogits, len(Tokens) rows for AllLogits, nil for NoLogits.
	// They are valid until the model's next Forward, which reuses the
	// memory (decoding would otherwise make garbage at every step).
	Logits [][]float32
}

// LoadFunc loads one architecture from a checkpoint directory whose config
// has been read.
type LoadFunc func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend) (Model, error)

// Loaders maps config.json model_type to the architecture's LoadFunc. It is
// a value built by the caller (model/archs.Loaders has every architecture
// of this build).
type Loaders map[string]LoadFunc
