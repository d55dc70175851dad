package moe

import (
	"fmt"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/model"
)

// BindExperts binds the n routed experts under prefix (the layer's MoE
// module path with a trailing dot, e.g. "model.layers.3.mlp.") in whichever
// layout the checkpoint uses, all zero-copy:
//
//   - experts.gate_up_proj [E, 2I, H] + experts.down_proj [E, H, I]
//     (transformers 5 save_pretrained; gate = first half);
//   - switch_mlp.{gate,up,down}_proj stacked [E, out, in] (MLX, any
//     quantization), or experts.switch_glu.… (MLX gemma4);
//   - experts.<e>.{gate,up,down}_proj per expert (Hugging Face hub files and
//     mach's engine layout).
func BindExperts(w *model.Weights, prefix string, n, hidden, inter int) ([]*Expert, error) {
	switch {
	case w.Has(prefix+"experts.gate_up_proj") || w.Has(prefix+"experts.gate_up_proj.weight"):
		return bindFused(w, prefix, n, hidden, inter)
	case w.Has(prefix + "switch_mlp.gate_proj.weight"):
		return bindStacked(w, prefix+"switch_mlp.", n, hidden, inter)
	case w.Has(prefix + "experts.switch_glu.gate_proj.weight"):
		return bindStacked(w, prefix+"experts.switch_glu.", n, hidden, inter)
	case w.Has(prefix + "experts.0.gate_proj.weight"):
		return bindPerExpert(w, prefix+"experts.", n, hidden, inter)
	}
	return nil, fault.Mark(fmt.Errorf("%s: no routed experts under %q: expected %sexperts.gate_up_proj, %sswitch_mlp.gate_proj.weight or %sexperts.0.gate_proj.weight",
		w.Dir, prefix, prefix, prefix, prefix), fault.ErrIO)
}

func stackedShape(t model.Tensor, n, out, in int) error {
	if len(t.Shape) != 3 || int(t.Shape[0]) != n || int(t.Shape[1]) != out || int(t.Shape[2]) != in {
		return fault.Mark(fmt.Errorf("tensor %q has shape %v, want [%d, %d, %d] from config.json (experts, out, in)", t.Name, t.Shape, n, out, in), fault.ErrIO)
	}
	return nil
}

func bindFused(w *model.Weights, prefix string, n, hidden, inter int) ([]*Expert, error) {
	gu, err := w.Matrix(prefix + "experts.gate_up_proj")
	if err != nil {
		return nil, err
	}
	if err := stackedShape(gu, n, 2*inter, hidden); err != nil {
		return nil, err
	}
	down, err := w.Matrix(prefix + "experts.down_proj")
	if err != nil {
		return nil, err
	}
	if err := stackedShape(down, n, hidden, inter); err != nil {
		return nil, err
	}
	out := make([]*Expert, n)
	for e := range out {
		x := &Expert{}
		if x.GateUp, err = w.Bind(gu.Name, gu.Slice(e)); err != nil {
			return nil, err
		}
		if x.Down, err = w.Bind(down.Name, down.Slice(e)); err != nil {
			return nil, err
		}
		out[e] = x
	}
	return out, nil
}

func bindStacked(w *model.Weights, prefix string, n, hidden, inter int) ([]*Expert, error) {
	var ts [3]model.Tensor
	for i, p := range []string{"gate_proj", "up_proj", "down_proj"} {
		t, err := w.Matrix(prefix + p)
		if err != nil {
			return nil, err
		}
		out, in := inter, hidden
		if p == "down_proj" {
			out, in = hidden, inter
		}
		if err := stackedShape(t, n, out, in); err != nil {
			return nil, err
		}
		ts[i] = t
	}
	out := make([]*Expert, n)
	var err error
	for e := range out {
		x := &Expert{}
		if x.Gate, err = w.Bind(ts[0].Name, ts[0].Slice(e)); err != nil {
			return nil, err
		}
		if x.Up, err = w.Bind(ts[1].Name, ts[1].Slice(e)); err != nil {
			return nil, err
		}
		if x.Down, err = w.Bind(ts[2].Name, ts[2].Slice(e)); err != nil {
			return nil, err
		}
		out[e] = x
	}
	return out, nil
}

func bindPerExpert(w *model.Weights, prefix string, n, hidden, inter int) ([]*Expert, error) {
	out := make([]*Expert, n)
	var err error
	for e := range out {
		p := fmt.Sprintf("%s%d.", prefix, e)
		x := &Expert{}
		if x.Gate, err = w.Linear(p+"gate_proj", inter, hidden); err != nil {
			return nil, err
		}
		if x.Up, err = w.Linear(p+"up_proj", inter, hidden); err != nil {
			return nil, err
		}
		if x.Down, err = w.Linear(p+"down_proj", hidden, inter); err != nil {
			return nil, err
		}
		out[e] = x
	}
	return out, nil
}
