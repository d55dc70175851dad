package modelconfig

import (
	"encoding/json"
	"sort"
	"strings"
)

// Quantization modes. The MLX modes are the "mode" values mlx-lm writes;
// FP8 is the Hugging Face block-FP8 format (DeepSeek masters).
const (
	ModeAffine = "affine"
	ModeMXFP4  = "mxfp4"
	ModeNVFP4  = "nvfp4"
	ModeMXFP8  = "mxfp8"
	ModeFP8    = "fp8"
)

// Quantization is a checkpoint's quantization block: MLX's "quantization"
// (global defaults plus per-module overrides) or a Hugging Face
// "quantization_config" (quant_method and its parameters).
type Quantization struct {
	// Key is where the block was found: "quantization",
	// "quantization_config", "text_config.quantization", ...
	Key string
	// Method is the Hugging Face quant_method ("mxfp4", "fp8", "awq", ...);
	// empty for an MLX block.
	Method string
	// Mode is the normalized mode: one of the Mode constants, or Method
	// when mach does not know it.
	Mode      string
	Bits      int
	GroupSize int
	// Overrides are MLX per-module settings keyed by module path (no
	// ".weight" suffix).
	Overrides map[string]ModuleQuant
	// ModulesToNotConvert is the Hugging Face exclusion list.
	ModulesToNotConvert []string
	// Raw is the block as written.
	Raw json.RawMessage
}

// ModuleQuant is the quantization of one module.
type ModuleQuant struct {
	Quantized bool
	Mode      string
	Bits      int
	GroupSize int
}

// mlxDefaults are mlx-lm's per-mode defaults when a block omits them.
var mlxDefaults = map[string]ModuleQuant{
	ModeAffine: {true, ModeAffine, 4, 64},
	ModeMXFP4:  {true, ModeMXFP4, 4, 32},
	ModeNVFP4:  {true, ModeNVFP4, 4, 16},
	ModeMXFP8:  {true, ModeMXFP8, 8, 32},
}

func readQuantization(top, text obj) (*Quantization, error) {
	// MLX writes "quantization" and a copy as "quantization_config"; the
	// MLX block wins because it carries the per-module overrides. VLM-style
	// configs may keep it under text_config.
	for _, src := range []struct {
		o   obj
		key string
	}{{top, "quantization"}, {top, "quantization_config"}, {text, "quantization"}, {text, "quantization_config"}} {
		if src.o.m == nil || !src.o.has(src.key) {
			continue
		}
		b, ok, err := src.o.object(src.key)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		q, err := parseQuantBlock(b)
		if err != nil {
			return nil, err
		}
		q.Key = src.o.path + src.key
		q.Raw = src.o.m[src.key]
		return q, nil
	}
	return nil, nil
}

func parseQuantBlock(b obj) (*Quantization, error) {
	q := &Quantization{}
	var err error
	if q.Method, err = b.str("quant_method"); err != nil {
		return nil, err
	}
	if q.Mode, err = b.str("mode"); err != nil {
		return nil, err
	}
	if q.Bits, err = b.integer("bits", "w_bit", "num_bits"); err != nil {
		return nil, err
	}
	if q.GroupSize, err = b.integer("group_size", "q_group_size"); err != nil {
		return nil, err
	}
	if q.ModulesToNotConvert, err = b.strings("modules_to_not_convert"); err != nil {
		return nil, err
	}
	switch strings.ToLower(q.Method) {
	case "":
		// An MLX block: mode defaults to affine in older checkpoints.
		if q.Mode == "" {
			q.Mode = ModeAffine
		}
		d, known := mlxDefaults[q.Mode]
		if known {
			if q.Bits == 0 {
				q.Bits = d.Bits
			}
			if q.GroupSize == 0 {
				q.GroupSize = d.GroupSize
			}
		}
		if err := q.readOverrides(b); err != nil {
			return nil, err
		}
	case "mxfp4":
		q.Mode, q.Bits, q.GroupSize = ModeMXFP4, 4, 32
	case "fp8":
		q.Mode, q.Bits = ModeFP8, 8
		blk, err := b.ints("weight_block_size")
		if err != nil {
			return nil, err
		}
		if len(blk) == 2 {
			q.GroupSize = blk[1]
		} else {
			q.GroupSize = 128
		}
	default:
		if q.Mode == "" {
			q.Mode = strings.ToLower(q.Method)
		}
	}
	return q, nil
}

func (q *Quantization) readOverrides(b obj) error {
	keys := make([]string, 0, len(b.m))
	for k := range b.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := b.m[k]
		trimmed := strings.TrimSpace(string(v))
		switch {
		case trimmed == "true" || trimmed == "false":
			if q.Overrides == nil {
				q.Overrides = map[string]ModuleQuant{}
			}
			if trimmed == "false" {
				q.Overrides[k] = ModuleQuant{}
			} else {
				q.Overrides[k] = ModuleQuant{Quantized: true, Mode: q.Mode, Bits: q.Bits, GroupSize: q.GroupSize}
			}
		case strings.HasPrefix(trimmed, "{"):
			sub, _, err := b.object(k)
			if err != nil {
				return err
			}
			m := ModuleQuant{Quantized: true, Mode: q.Mode, Bits: q.Bits, GroupSize: q.GroupSize}
			if s, err := sub.str("mode"); err != nil {
				return err
			} else if s != "" {
				m.Mode = s
			}
			if n, err := sub.integer("bits"); err != nil {
				return err
			} else if n > 0 {
				m.Bits = n
			}
			if n, err := sub.integer("group_size"); err != nil {
				return err
			} else if n > 0 {
				m.GroupSize = n
			}
			if q.Overrides == nil {
				q.Overrides = map[string]ModuleQuant{}
			}
			q.Overrides[k] = m
		}
	}
	return nil
}

// ForModule returns the quantization of a module path (no ".weight"): the
// per-module override when there is one, else the defaults.
func (q *Quantization) ForModule(path string) ModuleQuant {
	if q == nil {
		return ModuleQuant{}
	}
	if m, ok := q.Overrides[path]; ok {
		return m
	}
	return ModuleQuant{Quantized: true, Mode: q.Mode, Bits: q.Bits, GroupSize: q.GroupSize}
}
