package kvcache

import (
	"fmt"

	"github.com/maniac-ai/mach/kernels"
)

// Spec describes a standard cache.
type Spec struct {
	// Layers gives each layer's key/value width.
	Layers []LayerShape
	// DType is the storage type (F32, F16 or BF16).
	DType kernels.DType
	// Capacity is the most tokens the sequence may hold.
	Capacity int
	// Initial is how many token rows to allocate up front (0: 256 or
	// Capacity if smaller); the cache doubles as it fills.
	Initial int
}

// Standard is a per-layer key/value cache in which token j sits at row j.
type Standard struct {
	b    kernels.Backend
	spec Spec

	// cache data: per layer, rows [0, rows) allocated
	k, v []kernels.Tensor
	rows int

	// cache metadata
	len int

	// current step
	pending int
	inStep  bool
}

// NewStandard returns an empty cache on backend b.
func NewStandard(b kernels.Backend, spec Spec) (*Standard, error) {
	if spec.Capacity <= 0 || len(spec.Layers) == 0 {
		return nil, fmt.Errorf("kvcache: capacity %d for %d layers", spec.Capacity, len(spec.Layers))
	}
	switch spec.DType {
	case kernels.F32, kernels.F16, kernels.BF16:
	default:
		return nil, fmt.Errorf("kvcache: storage type %s", spec.DType)
	}
	c := &Standard{b: b, spec: spec, k: make([]kernels.Tensor, len(spec.Layers)), v: make([]kernels.Tensor, len(spec.Layers))}
	init := spec.Initial
	if init <= 0 {
		init = 256
	}
	if err := c.grow(min(init, spec.Capacity)); err != nil {
		return nil, err
	}
	return c, nil
}

// BytesPerToken returns the storage one token takes across all layers.
func (s Spec) BytesPerToken() int {
	n := 0
	for _, l := range s.Layers {
		n += l.K + l.V
	}
	return n * s.DType.Size()
}

// Len implements Cache.
func (c *Standard) Len() int { return c.len }

// Capacity implements Cache.
func (c *Standard) Capacity() int { return c.spec.Capacity }

// Bytes returns the memory the cache holds now.
func (c *Standard) Bytes() int { return c.rows * c.spec.BytesPerToken() }

func (c *Standard) grow(rows int) error {
	for l, shape := range c.spec.Layers {
		k, err := c.b.Alloc(c.spec.DType, rows, shape.K)
		if err != nil {
			return fmt.Errorf("kvcache: %w", err)
		}
		v, err := c.b.Alloc(c.spec.DType, rows, shape.V)
		if err != nil {
			return fmt.Errorf("kvcache: %w", err)
		}
		if c.len > 0 {
			c.b.Copy(k.RowRange(0, c.len), c.k[l].RowRange(0, c.len))
			c.b.Copy(v.RowRange(0, c.len), c.v[l].RowRange(0, c.len))
		}
		c.k[l], c.v[l] = k, v
	}
	c.rows = rows
	return c.b.Sync()
}

// Begin implements Cache.
func (c *Standard) Begin(n int) error {
	if err := checkBegin(c.k == nil, c.len, n, c.spec.Capacity); err != nil {
		return err
	}
	if need := c.len + n; need > c.rows {
		if err := c.grow(min(c.spec.Capacity, max(need, 2*c.rows))); err != nil {
			return err
		}
	}
	c.pending, c.inStep = n, true
	return nil
}

// Update implements Cache.
func (c *Standard) Update(layer int, k, v kernels.Tensor) (View, error) {
	if !c.inStep {
		return View{}, fmt.Errorf("kvcache: Update outside a step (call Begin)")
	}
	if layer < 0 || layer >= len(c.k) {
		return View{}, fmt.Errorf("kvcache: layer %d of %d", layer, len(c.k))
	}
	if k.Rows != c.pending || v.Rows != c.pending {
		return View{}, fmt.Errorf("kvcache: layer %d: %d key and %d value rows for a step of %d", layer, k.Rows, v.Rows, c.pending)
	}
	end := c.len + c.pending
	c.b.Copy(c.k[layer].RowRange(c.len, end), k)
	c.b.Copy(c.v[layer].RowRange(c.len, end), v)
	return View{K: c.k[layer].RowRange(0, end), V: c.v[layer].RowRange(0, end), NumKeys: end}, nil
}

// Commit implements Cache.
func (c *Standard) Commit() {
	if c.inStep {
		c.len += c.pending
	}
	c.pending, c.inStep = 0, false
}

// Truncate implements Cache.
func (c *Standard) Truncate(n int) error {
	if n < 0 || n > c.len {
		return fmt.Errorf("kvcache: truncate to %d of %d tokens", n, c.len)
	}
	c.len = n
	c.pending, c.inStep = 0, false
	return nil
}

// Release implements Cache.
func (c *Standard) Release() {
	c.k, c.v = nil, nil
	c.rows, c.len = 0, 0
}
