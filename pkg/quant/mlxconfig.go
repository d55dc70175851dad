package quant

import (
	"encoding/json"
	"fmt"
	"strings"
)

// MLXConfig is config.json's MLX "quantization" block: global defaults plus
// per-module overrides keyed by module path (no ".weight" suffix). A module
// override of false means "not quantized".
type MLXConfig struct {
	GroupSize int
	Bits      int
	Mode      string // "affine" (default), "mxfp4", …
	Overrides map[string]*MLXParams
}

// MLXParams are the quantization parameters of one module; nil in
// MLXConfig.Overrides means the module is left unquantized.
type MLXParams struct {
	GroupSize int
	Bits      int
	Mode      string
}

// ParseMLXConfig decodes a "quantization" object. Keys whose value is an
// object or a boolean are per-module overrides; the scalar keys group_size,
// bits and mode are the defaults (mode defaults to affine).
func ParseMLXConfig(raw json.RawMessage) (*MLXConfig, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("quantization block: %w", err)
	}
	c := &MLXConfig{Mode: "affine", Overrides: map[string]*MLXParams{}}
	for k, v := range obj {
		switch k {
		case "group_size":
			if err := json.Unmarshal(v, &c.GroupSize); err != nil {
				return nil, fmt.Errorf("quantization.group_size: %w", err)
			}
		case "bits":
			if err := json.Unmarshal(v, &c.Bits); err != nil {
				return nil, fmt.Errorf("quantization.bits: %w", err)
			}
		case "mode":
			if err := json.Unmarshal(v, &c.Mode); err != nil {
				return nil, fmt.Errorf("quantization.mode: %w", err)
			}
		default:
			t := strings.TrimSpace(string(v))
			switch {
			case t == "false":
				c.Overrides[k] = nil
			case t == "true":
				// Quantized with the defaults: no override.
			case strings.HasPrefix(t, "{"):
				var p struct {
					GroupSize *int   `json:"group_size"`
					Bits      *int   `json:"bits"`
					Mode      string `json:"mode"`
				}
				if err := json.Unmarshal(v, &p); err != nil {
					return nil, fmt.Errorf("quantization[%q]: %w", k, err)
				}
				o := &MLXParams{Mode: p.Mode}
				if p.GroupSize != nil {
					o.GroupSize = *p.GroupSize
				}
				if p.Bits != nil {
					o.Bits = *p.Bits
				}
				c.Overrides[k] = o
			}
			// Other scalar keys (e.g. quantize_activations) do not change
			// how weights are stored.
		}
	}
	return c, nil
}

// For returns the parameters of module path: its override filled in with
// the defaults, or the defaults; ok is false when the module is explicitly
// left unquantized.
func (c *MLXConfig) For(path string) (p MLXParams, ok bool) {
	p = MLXParams{GroupSize: c.GroupSize, Bits: c.Bits, Mode: c.Mode}
	if o, has := c.Overrides[path]; has {
		if o == nil {
			return p, false
		}
		if o.GroupSize != 0 {
			p.GroupSize = o.GroupSize
		}
		if o.Bits != 0 {
			p.Bits = o.Bits
		}
		if o.Mode != "" {
			p.Mode = o.Mode
		}
	}
	if p.Mode == "" {
		p.Mode = "affine"
	}
	return p, true
}

// Format returns the storage format of these parameters with scales of
// type scale (affine only; mxfp4 always uses e8m0).
func (p MLXParams) Format(scale ScaleType) (Format, error) {
	switch p.Mode {
	case "affine":
		return Format{Kind: Affine, Bits: p.Bits, GroupSize: p.GroupSize, Scale: scale}, nil
	case "mxfp4":
		gs := p.GroupSize
		if gs == 0 {
			gs = 32
		}
		return Format{Kind: MXFP4, Bits: 4, GroupSize: gs, Scale: ScaleE8M0}, nil
	}
	return Format{}, fmt.Errorf("%w: MLX quantization mode %q is not supported (affine and mxfp4 are)", ErrFormat, p.Mode)
}
