package cliapp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{fmt.Errorf("x: %w", context.Canceled), ExitInterrupted},
		{Usagef("bad"), ExitUsage},
		{fault.Mark(errors.New("no"), fault.ErrUnsupported), ExitNo},
		{fault.NotImplemented("x"), ExitNotImplemented},
		{fault.Mark(errors.New("gone"), fault.ErrIO), ExitIO},
		{fault.Mark(errors.New("down"), fault.ErrNetwork), ExitNetwork},
		{cli.Exit("x", 42), 42},
		{errors.New("other"), ExitFailure},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, ExitCode(tt.err), "ExitCode(%v)", tt.err)
	}
}

func TestAppUsageErrors(t *testing.T) {
	app := NewApp("t", "test", "desc")
	app.Flags = append(app.Flags, JSONFlag(""))
	app.Action = NoArgs
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	require.Equal(t, ExitUsage, Run(context.Background(), app, []string{"t", "--bogus"}, &errb))
	require.Equal(t, ExitUsage, Run(context.Background(), app, []string{"t", "arg"}, &errb))
	require.Equal(t, ExitUsage, Run(context.Background(), app, []string{"t", "--log-level", "loud"}, &errb))
	require.Equal(t, ExitOK, Run(context.Background(), app, []string{"t", "--json"}, &errb))
	app.Action = NotImplemented
	errb.Reset()
	require.Equal(t, ExitNotImplemented, Run(context.Background(), app, []string{"t"}, &errb))
	require.Contains(t, errb.String(), "blocked")
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteTable(&b, []string{"a", "long header"}, [][]string{{"x", "y"}, {"longer", ""}}))
	require.Equal(t, "a       long header\n------  -----------\nx       y\nlonger\n", b.String())
}

func TestSize(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{{0, "0B"}, {999, "999B"}, {1000, "1.0KB"}, {14_200_000_000, "14.2GB"}, {512_000_000, "512.0MB"}, {999_949_999, "999.9MB"}} {
		require.Equal(t, c.want, Size(c.n), "%d bytes", c.n)
	}
}
