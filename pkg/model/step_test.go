package model_test

import (
	"errors"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/stretchr/testify/require"
)

// End commits a step that succeeded and drops one that failed from every
// cache, passing its error on.
func TestStepEnd(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	c, err := kvcache.NewStandard(b, kvcache.Spec{Layers: []kvcache.LayerShape{{K: 4, V: 4}}, DType: kernels.F32, Capacity: 16})
	require.NoError(t, err)
	batch := &model.Batch{Seqs: []model.Seq{{Tokens: []int32{1, 2, 3}, Cache: c, Logits: model.LastLogits}}}

	step, err := model.BeginStep(batch, 10, 0)
	require.NoError(t, err)
	require.NoError(t, step.End(b, nil))
	require.Equal(t, 3, c.Len())

	failed := errors.New("failed")
	step, err = model.BeginStep(batch, 10, 0)
	require.NoError(t, err)
	require.ErrorIs(t, step.End(b, failed), failed)
	require.Equal(t, 3, c.Len(), "a failed step leaves the cache as it was")
	step, err = model.BeginStep(batch, 10, 0)
	require.NoError(t, err, "and ready for the next")
	require.NoError(t, step.End(b, nil))
	require.Equal(t, 6, c.Len())
}
