package qwen35moe

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/model"
)

// Layout is how a checkpoint names and stores the text model's tensors.
type Layout struct {
	// Prefix comes before "embed_tokens", "layers.N." and "norm":
	// "model.language_model." (transformers' wrapped model and the hub
	// files), "model." (the text-only Qwen3_5MoeForCausalLM) or
	// "language_model.model." (mlx-lm conversions).
	Prefix string
	// Head is the output projection's base name.
	Head string
	// MLX: the checkpoint went through mlx-lm's conversion.
	MLX bool
	// ShiftedNorms: the (1+w) norms are stored as w+1 (mlx-lm adds the 1
	// when it converts), so they are used as plain weights; otherwise the
	// loader adds 1.
	ShiftedNorms bool
	// Why says which tensors decided ShiftedNorms.
	Why string
}

// prefixes are the known text-model prefixes, probed in order.
var prefixes = []struct {
	prefix, head string
	mlx          bool
}{
	{"model.language_model.", "lm_head", false},
	{"language_model.model.", "language_model.lm_head", true},
	{"model.", "lm_head", false},
}

// DetectLayout finds the checkpoint's naming and decides whether its
// zero-centred norms are already shifted. mlx-lm decides the same thing
// from the convolution weight: transformers stores it [C, 1, K], mlx-lm
// moves it to [C, K, 1] in the same conversion that adds 1 to the norms.
// The naming (mlx-lm's language_model.model. prefix) and the MTP head
// (which mlx-lm drops) are further signals; when they disagree with the
// convolution layout the checkpoint was converted inconsistently and
// DetectLayout refuses it rather than guess. A convolution of one tap
// looks the same both ways, so the naming decides then.
func DetectLayout(w *model.Weights, o Options) (Layout, error) {
	var l Layout
	found := false
	for _, p := range prefixes {
		if w.Has(p.prefix+"embed_tokens.weight") || w.Has(p.prefix+"embed_tokens") {
			l.Prefix, l.Head, l.MLX, found = p.prefix, p.head, p.mlx, true
			break
		}
	}
	if !found {
		return Layout{}, fault.Mark(fmt.Errorf("%s: %w: no embed_tokens.weight under model.language_model., language_model.model. or model.; not a qwen3_5_moe checkpoint mach knows",
			w.Dir, model.ErrWeight), fault.ErrIO)
	}
	mtp := w.Has("mtp.fc.weight")
	conv := -1 // the first linear layer's convolution: 1 raw, 0 converted, -1 undecided
	convName := ""
	for i, lin := range o.Linear {
		if !lin {
			continue
		}
		convName = fmt.Sprintf("%slayers.%d.linear_attn.conv1d.weight", l.Prefix, i)
		t, err := w.Matrix(strings.TrimSuffix(convName, ".weight"))
		if err != nil {
			return Layout{}, err
		}
		if len(t.Shape) != 3 {
			return Layout{}, fault.Mark(fmt.Errorf("%s: tensor %q has shape %v, want [%d, 1, %d] (transformers) or [%d, %d, 1] (mlx-lm)",
				w.Dir, convName, t.Shape, o.ConvDim(), o.ConvKernel, o.ConvDim(), o.ConvKernel), fault.ErrIO)
		}
		switch {
		case o.ConvKernel == 1:
		case t.Shape[2] != 1:
			conv = 1
		default:
			conv = 0
		}
		break
	}
	var why []string
	raw := !l.MLX
	why = append(why, fmt.Sprintf("tensor names under %q", l.Prefix))
	if conv >= 0 {
		if (conv == 1) != raw {
			return Layout{}, fault.Mark(fmt.Errorf("%s: inconsistent conversion: %s is in the %s layout but the tensor names are %s's (%q); cannot tell whether the (1+w) norms are shifted, so refusing to guess — re-convert the checkpoint with one tool",
				w.Dir, convName, map[bool]string{true: "transformers [C, 1, K]", false: "mlx-lm [C, K, 1]"}[conv == 1],
				map[bool]string{true: "transformers", false: "mlx-lm"}[raw], l.Prefix), fault.ErrUnsupported)
		}
		why = append(why, "the "+map[bool]string{true: "[C, 1, K]", false: "[C, K, 1]"}[raw]+" conv1d layout")
	}
	if mtp {
		if !raw {
			return Layout{}, fault.Mark(fmt.Errorf("%s: inconsistent conversion: mlx-lm tensor names (%q) next to an MTP head (mtp.*), which mlx-lm drops when it shifts the norms; refusing to guess whether the norms are shifted",
				w.Dir, l.Prefix), fault.ErrUnsupported)
		}
		why = append(why, "the MTP head")
	}
	l.ShiftedNorms = !raw
	l.Why = strings.Join(why, ", ")
	slog.Debug("qwen3_5_moe checkpoint layout", "dir", w.Dir, "prefix", l.Prefix, "mlx", l.MLX, "norms_shifted", l.ShiftedNorms, "decided_by", l.Why)
	return l, nil
}
