package prune_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/deepseekv4"
	"github.com/maniac-ai/mach/pkg/model/gemma4"
	"github.com/maniac-ai/mach/pkg/model/gptoss"
	"github.com/maniac-ai/mach/pkg/model/qwen35moe"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/prune"
	"github.com/maniac-ai/mach/pkg/pruneplan"
	"github.com/stretchr/testify/require"
)

// maskable is a model whose MoE layers can mask experts out of routing.
type maskable interface {
	model.Model
	MaskExperts(layer int, removed []int) error
}

type loadFunc func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend) (maskable, error)

// forwardPasses are the architectures with a forward pass, keyed by
// model_type, and whether their loader reads num_experts_per_layer.
var forwardPasses = map[string]struct {
	load     loadFunc
	perLayer bool
	keepOnly bool // no expert masking: only the keep-all conversion is compared
}{
	"qwen3_moe": {func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend) (maskable, error) {
		return qwen3moe.Load(ctx, dir, cfg, b, qwen3moe.LoadOptions{})
	}, true, false},
	"qwen3_5_moe": {func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend) (maskable, error) {
		return qwen35moe.Load(ctx, dir, cfg, b, qwen35moe.LoadOptions{})
	}, true, false},
	"gpt_oss": {func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend) (maskable, error) {
		return gptoss.Load(ctx, dir, cfg, b, gptoss.LoadOptions{})
	}, true, false},
	// The gemma4 loader refuses num_experts_per_layer in this build.
	"gemma4": {func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend) (maskable, error) {
		return gemma4.Load(ctx, dir, cfg, b, gemma4.LoadOptions{})
	}, false, false},
	// deepseek_v4 has no router mask to compare a pruned checkpoint with
	// (its hash layers route by token table), so only keep-all is checked.
	"deepseek_v4": {func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend) (maskable, error) {
		m, err := deepseekv4.Load(ctx, dir, cfg, b, deepseekv4.LoadOptions{})
		return unmaskable{m}, err
	}, true, true},
}

// unmaskable is a model without expert masking.
type unmaskable struct{ model.Model }

func (unmaskable) MaskExperts(int, []int) error { return errors.New("no expert masking") }

// logitFixtures: every fixture of an architecture in forwardPasses, in
// each layout and quantization.
var logitFixtures = []string{
	"qwen3_moe", "qwen3_moe_bf16", "qwen3_moe_perexpert", "qwen3_moe_stacked",
	"qwen3_moe_mlx4", "qwen3_moe_mlx8", "qwen3_moe_nonorm",
	"qwen3_5_moe", "qwen3_5_moe_bf16", "qwen3_5_moe_mlx", "qwen3_5_moe_mlx4",
	"gpt_oss", "gpt_oss_bf16", "gpt_oss_mlx", "gpt_oss_mxfp4",
	"gemma4", "gemma4_mlx4", "gemma4_ple",
	"deepseek_v4", "deepseek_v4_fp8",
}

func loadModel(t *testing.T, dir string, b kernels.Backend) maskable {
	t.Helper()
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	fp, ok := forwardPasses[cfg.ModelType]
	require.True(t, ok, "no forward pass for %s", cfg.ModelType)
	m, err := fp.load(t.Context(), dir, cfg, b)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// promptLogits runs the fixture's prompt in one step and returns the
// logits of every position.
func promptLogits(t *testing.T, m model.Model, prompt []int32) []float32 {
	t.Helper()
	c, err := m.NewCache(len(prompt), kernels.F32)
	require.NoError(t, err)
	out, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{{Cache: c, Tokens: prompt, Logits: model.AllLogits}}})
	require.NoError(t, err)
	return append([]float32(nil), out.Logits[0]...)
}

// The correctness bars, on every fixture of every architecture
// with a forward pass: a keep-all conversion computes exactly the source's
// logits, and a pruned checkpoint computes the source's logits with the
// removed experts' router logits masked to −Inf (the definition of
// pruning), within 1e-5.
func TestLogits(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	for _, name := range logitFixtures {
		fx, err := fixture.Load(name)
		require.NoError(t, err)
		cfg, err := modelconfig.Load(fx.Dir)
		require.NoError(t, err)
		moe := cfg.MoELayers()
		plans := map[string]*pruneplan.Candidate{
			"keep_all": nil,
			// Uniform: drop three experts of every layer, different ones
			// per layer.
			"uniform_k5": candidate("k5", cfg.NumExperts, moe, func(l, e int) bool {
				return e != l%8 && e != (l+3)%8 && e != (l+5)%8
			}),
		}
		if forwardPasses[cfg.ModelType].keepOnly {
			plans = map[string]*pruneplan.Candidate{"keep_all": nil}
		} else if forwardPasses[cfg.ModelType].perLayer {
			// Non-uniform: the first MoE layer keeps only top-k experts.
			plans["per_layer"] = candidate("mixed", cfg.NumExperts, moe, func(l, e int) bool {
				if l == moe[0] {
					return e == 1 || e == 6
				}
				return e != 2
			})
		}
		for plan, c := range plans {
			t.Run(name+"/"+plan, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out")
				// Small shards, so the loader reads a multi-shard output.
				sum, err := prune.Run(t.Context(), prune.Options{Source: fx.Dir, Output: out, Candidate: c, MaxShardSize: 64 << 10})
				require.NoError(t, err)
				if plan == "uniform_k5" {
					require.True(t, sum.Uniform())
				}
				src := loadModel(t, fx.Dir, b)
				pruned := loadModel(t, out, b)
				if c != nil {
					for _, l := range c.Layers() {
						require.NoError(t, src.(maskable).MaskExperts(l, c.Removed(l)))
					}
				}
				want := promptLogits(t, src, fx.InputIDs)
				got := promptLogits(t, pruned, fx.InputIDs)
				if c == nil {
					require.Equal(t, want, got, "keep-all output must compute the source's logits exactly")
					return
				}
				worst := 0.0
				for i := range want {
					worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
				}
				require.LessOrEqual(t, worst, 1e-5, "pruned vs masked source: max |Δlogit|")
				t.Logf("%s %s: max |Δlogit| pruned vs masked = %.3g", name, plan, worst)
				// The mask really changed the model: pruning is not a no-op.
				require.Greater(t, fixture.RelL2(want, fx.Logits), 1e-3)
			})
		}
	}
}

// candidate keeps, in every layer, the experts keep(layer, expert) picks.
func candidate(id string, n int, layers []int, keep func(l, e int) bool) *pruneplan.Candidate {
	c := &pruneplan.Candidate{ID: id, NumExperts: n, Keep: map[int][]int{}}
	for _, l := range layers {
		for e := range n {
			if keep(l, e) {
				c.Keep[l] = append(c.Keep[l], e)
			}
		}
	}
	return c
}
