package fault_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/stretchr/testify/require"
)

func TestMark(t *testing.T) {
	base := errors.New("config.json: missing model_type")
	err := fmt.Errorf("inspect ./ckpt: %w", fault.Mark(base, fault.ErrIO))
	require.ErrorIs(t, err, fault.ErrIO)
	require.ErrorIs(t, err, base)
	require.NotErrorIs(t, err, fault.ErrUsage)
	require.Equal(t, "inspect ./ckpt: config.json: missing model_type", err.Error())
	require.NoError(t, fault.Mark(nil, fault.ErrIO))
}

func TestNotImplemented(t *testing.T) {
	err := fault.NotImplemented("mach-serve")
	require.ErrorIs(t, err, fault.ErrNotImplemented)
	require.Contains(t, err.Error(), "blocked:")
	require.Contains(t, err.Error(), "mach-serve")
}
