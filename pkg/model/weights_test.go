package model_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/stretchr/testify/require"
)

// TestDequantAllFixtures: every quantized fixture's stored tensors decode
// (MLX affine, MLX mxfp4, gpt-oss blocks) to exactly the float32 weights
// transformers used for its reference.
func TestDequantAllFixtures(t *testing.T) {
	names, err := fixture.Names()
	require.NoError(t, err)
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	checked := 0
	for _, name := range names {
		fx, err := fixture.Load(name)
		require.NoError(t, err)
		if len(fx.Dequant) == 0 {
			continue
		}
		cfg, err := modelconfig.Load(fx.Dir)
		require.NoError(t, err)
		w, err := model.OpenWeights(fx.Dir, cfg, b)
		require.NoError(t, err)
		for base, want := range fx.Dequant {
			tt, err := w.Matrix(strings.TrimSuffix(base, "_blocks"))
			require.NoError(t, err, "%s: %s", name, base)
			require.Equal(t, want.Shape, tt.Shape, "%s: %s shape", name, base)
			got := tt.M.Dequantize()
			require.Len(t, got, len(want.Data), "%s: %s (shape %v vs %v)", name, base, tt.Shape, want.Shape)
			for i := range got {
				if got[i] != want.Data[i] {
					require.Failf(t, "dequantized weight differs", "%s: %s element %d: %g, reference %g", name, base, i, got[i], want.Data[i])
				}
			}
			checked++
			t.Logf("%s: %s %s exact", name, base, tt.M.Format)
		}
		require.NoError(t, w.Close())
	}
	require.Positive(t, checked)
}

// Head binds the untied head when the checkpoint has it, the embedding
// when config.json ties them, and otherwise says neither is there.
func TestHead(t *testing.T) {
	fx, err := fixture.Load("qwen3_moe")
	require.NoError(t, err)
	cfg, err := modelconfig.Load(fx.Dir)
	require.NoError(t, err)
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	w, err := model.OpenWeights(fx.Dir, cfg, b)
	require.NoError(t, err)
	defer w.Close()
	require.True(t, w.Has("lm_head.weight"))
	embed, err := w.Linear("model.embed_tokens", cfg.VocabSize, cfg.HiddenSize)
	require.NoError(t, err)

	head, err := w.Head("lm_head", cfg.VocabSize, cfg.HiddenSize, embed, true)
	require.NoError(t, err)
	require.NotSame(t, embed, head, "an untied head in the checkpoint wins")
	require.Equal(t, cfg.VocabSize, head.Rows())

	head, err = w.Head("output", cfg.VocabSize, cfg.HiddenSize, embed, true)
	require.NoError(t, err)
	require.Equal(t, embed, head)

	_, err = w.Head("output", cfg.VocabSize, cfg.HiddenSize, embed, false)
	require.EqualError(t, err, fx.Dir+": no output.weight and tie_word_embeddings is false in config.json")
	_, err = w.Head("lm_head", cfg.VocabSize+1, cfg.HiddenSize, embed, false)
	require.ErrorIs(t, err, model.ErrWeight, "the head's shape is checked")
}

// BindWeights hands the mapped weights to bind and passes its result or
// error through.
func TestBindWeights(t *testing.T) {
	fx, err := fixture.Load("qwen3_moe")
	require.NoError(t, err)
	cfg, err := modelconfig.Load(fx.Dir)
	require.NoError(t, err)
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	got, err := model.BindWeights(fx.Dir, cfg, b, func(w *model.Weights) (*model.Weights, error) { return w, nil })
	require.NoError(t, err)
	require.True(t, got.Has("lm_head.weight"))
	require.NoError(t, got.Close())

	refused := errors.New("refused")
	got, err = model.BindWeights(fx.Dir, cfg, b, func(w *model.Weights) (*model.Weights, error) { return w, refused })
	require.ErrorIs(t, err, refused)
	require.Nil(t, got)
	_, err = model.BindWeights(t.TempDir(), cfg, b, func(w *model.Weights) (*model.Weights, error) {
		t.Fatal("bind called without weights")
		return w, nil
	})
	require.Error(t, err)
}
