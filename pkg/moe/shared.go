package moe

import (
	"fmt"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/model"
)

// Shared is a dense expert every token goes through beside the routed ones:
// Qwen3.5's shared_expert scaled by σ(shared_expert_gate·x), DeepSeek's
// shared experts (no gate). Its weights are ordinary resident tensors, not
// part of the expert Store.
type Shared struct {
	MLP *model.MLP
	// Gate, when set, is a 1-output projection whose sigmoid scales the
	// expert's output per token.
	Gate *model.Linear
}

// LoadShared binds prefix.{gate,up,down}_proj and, when gate is not empty,
// the gate projection gate (one output).
func LoadShared(w *model.Weights, prefix, gate string, hidden, inter int, act kernels.Activation) (*Shared, error) {
	mlp, err := w.LoadMLP(prefix, hidden, inter, act)
	if err != nil {
		return nil, err
	}
	mlp.Name = "shared"
	s := &Shared{MLP: mlp}
	if gate != "" {
		if s.Gate, err = w.LoadLinear(gate, 1, hidden); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Bytes returns the stored size of the shared expert's weights.
func (s *Shared) Bytes() int64 {
	return model.LinearBytes(s.MLP.Gate, s.MLP.Up, s.MLP.Down, s.Gate) // Gate may be nil
}

// AddTo adds the shared expert's output for x (rows × hidden) to out.
func (s *Shared) AddTo(b kernels.Backend, ws *model.Workspace, x, out kernels.Tensor) error {
	y, err := ws.Get("shared.y", x.Rows, x.Cols)
	if err != nil {
		return err
	}
	if err := s.MLP.Forward(b, ws, y, x); err != nil {
		return err
	}
	if s.Gate != nil {
		g, err := ws.Get("shared.g", x.Rows, 1)
		if err != nil {
			return err
		}
		s.Gate.Forward(b, g, x)
		if err := kernels.SigmoidMul(b, y, g, y); err != nil {
			return fmt.Errorf("shared expert gate: %w", err)
		}
	}
	b.Add(out, out, y)
	return nil
}
