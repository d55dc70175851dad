package gptoss_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/gptoss"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/stretchr/testify/require"
)

// perExpertCheckpoint rewrites the gpt_oss_mlx fixture in the per-expert
// engine layout that mach-prune writes (experts.<e>.{gate,up,down}_proj.
// {weight,scales,bias}), with a quantization override per expert module.
func perExpertCheckpoint(t *testing.T) string {
	t.Helper()
	src, err := fixture.Load("gpt_oss_mlx")
	require.NoError(t, err)
	f, err := safetensors.Open(filepath.Join(src.Dir, "model.safetensors"))
	require.NoError(t, err)
	defer f.Close()
	raw, err := os.ReadFile(filepath.Join(src.Dir, "config.json"))
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(raw, &cfg))
	q := cfg["quantization"].(map[string]any)

	var out []safetensors.WriteTensor
	for _, info := range f.Header().Tensors {
		name := info.Name
		data, err := f.Bytes(name)
		require.NoError(t, err)
		head, rest, ok := strings.Cut(name, ".mlp.experts.")
		if !ok {
			out = append(out, safetensors.WriteTensor{Name: name, DType: info.DType, Shape: info.Shape, Data: data})
			continue
		}
		proj, part, _ := strings.Cut(rest, ".")
		experts := int(info.Shape[0])
		per := len(data) / experts
		for e := 0; e < experts; e++ {
			module := fmt.Sprintf("%s.mlp.experts.%d.%s", head, e, proj)
			out = append(out, safetensors.WriteTensor{Name: module + "." + part, DType: info.DType, Shape: info.Shape[1:], Data: data[e*per : (e+1)*per]})
			if part == "weight" {
				q[module] = q[head+".mlp.experts."+proj]
			}
		}
	}
	dir := t.TempDir()
	require.NoError(t, safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), out, map[string]string{"format": "mlx"}))
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))
	return dir
}

// TestPerExpertLayout: the engine layout loads and matches the reference
// like the stacked MLX form it came from.
func TestPerExpertLayout(t *testing.T) {
	dir := perExpertCheckpoint(t)
	fx, err := fixture.Load("gpt_oss_mlx")
	require.NoError(t, err)
	b := cpu.New(cpu.Options{})
	defer b.Close()
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	m, err := gptoss.Load(t.Context(), dir, cfg, b, gptoss.LoadOptions{})
	require.NoError(t, err)
	defer m.Close()
	got := modeltest.Run(t, m, newSeq(t, m, kernels.F32), fx.InputIDs)
	for p, lg := range got {
		require.LessOrEqual(t, fixture.RelL2(lg, fx.Row(p)), 1e-4, "position %d", p)
	}
}

// TestMissingExperts: a checkpoint without experts in any known layout is
// refused with the names looked for.
func TestMissingExperts(t *testing.T) {
	src, err := fixture.Load("gpt_oss_mlx")
	require.NoError(t, err)
	f, err := safetensors.Open(filepath.Join(src.Dir, "model.safetensors"))
	require.NoError(t, err)
	defer f.Close()
	var out []safetensors.WriteTensor
	for _, info := range f.Header().Tensors {
		name := info.Name
		if strings.Contains(name, "layers.2.mlp.experts.") {
			continue
		}
		data, err := f.Bytes(name)
		require.NoError(t, err)
		out = append(out, safetensors.WriteTensor{Name: name, DType: info.DType, Shape: info.Shape, Data: data})
	}
	dir := t.TempDir()
	require.NoError(t, safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), out, nil))
	raw, err := os.ReadFile(filepath.Join(src.Dir, "config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644))
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	_, err = gptoss.Load(t.Context(), dir, cfg, b, gptoss.LoadOptions{})
	require.ErrorContains(t, err, "model.layers.2.mlp.experts.gate_up_proj_blocks")
}

var _ model.Model = (*gptoss.Model)(nil)
