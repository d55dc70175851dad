package dispatch

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/stretchr/testify/require"
)

func writeExe(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755))
	return p
}

func TestFind(t *testing.T) {
	next := t.TempDir()
	onPath := t.TempDir()
	writeExe(t, next, "mach-check")
	pathCheck := writeExe(t, onPath, "mach-check")
	pathArchs := writeExe(t, onPath, "mach-archs")
	require.NoError(t, os.WriteFile(filepath.Join(next, "mach-models"), []byte("x"), 0o644)) // not executable
	look := func(n string) (string, error) {
		p := filepath.Join(onPath, n)
		if isExecutable(p) {
			return p, nil
		}
		return "", errors.New("not found")
	}
	f := Finder{Dir: next, LookPath: look}
	tests := []struct {
		name    string
		want    string
		wantErr error // with fault.ErrUsage for an unknown command, fault.ErrIO for a missing one
	}{
		{"check", filepath.Join(next, "mach-check"), nil}, // next to mach wins over PATH
		{"archs", pathArchs, nil},
		{"models", "", ErrNotInstalled}, // known, but its file is not executable
		{"nosuch", "", ErrUnknownCommand},
		{"../check", "", ErrUnknownCommand},
		{"", "", ErrUnknownCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.Find(tt.name)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				if tt.wantErr == ErrNotInstalled {
					require.ErrorIs(t, err, fault.ErrIO)
				} else {
					require.ErrorIs(t, err, fault.ErrUsage)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	_ = pathCheck
}

func TestSuggest(t *testing.T) {
	f := Finder{Dir: t.TempDir()}
	_, err := f.Find("chek")
	require.ErrorContains(t, err, "did you mean 'check'")
	_, err = f.Find("zzzzzzzz")
	require.NotContains(t, err.Error(), "did you mean")
}

// A known command whose executable is missing is an installation
// problem (exit 4), not an unknown command.
func TestKnownButNotInstalled(t *testing.T) {
	f := Finder{Dir: t.TempDir()}
	_, err := f.Find("check")
	require.ErrorIs(t, err, ErrNotInstalled)
	require.ErrorIs(t, err, fault.ErrIO)
	require.NotErrorIs(t, err, ErrUnknownCommand)
	require.ErrorContains(t, err, "mach-check is not installed: looked next to mach ("+f.Dir+") and on PATH")
	require.NotContains(t, err.Error(), "did you mean")
}
