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
		wantErr bool
	}{
		{"check", filepath.Join(next, "mach-check"), false}, // next to mach wins over PATH
		{"archs", pathArchs, false},
		{"models", "", true},
		{"nosuch", "", true},
		{"../check", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.Find(tt.name)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrUnknownCommand)
				require.ErrorIs(t, err, fault.ErrUsage)
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
