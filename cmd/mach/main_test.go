package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/dispatch"
	"github.com/stretchr/testify/require"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"mach-check", "mach-archs"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755))
	}
	f := dispatch.Finder{Dir: dir}
	type call struct {
		path string
		args []string
	}
	tests := []struct {
		name     string
		args     []string
		wantCall *call
		wantCode int
		wantOut  string
	}{
		{"no args lists commands", nil, nil, 0, "check"},
		{"help", []string{"help"}, nil, 0, "Commands:"},
		{"version", []string{"--version"}, nil, 0, "mach version"},
		{"dispatch", []string{"check", "--json", "x"}, &call{filepath.Join(dir, "mach-check"), []string{"--json", "x"}}, 0, ""},
		{"help NAME", []string{"help", "archs"}, &call{filepath.Join(dir, "mach-archs"), []string{"--help"}}, 0, ""},
		{"unknown", []string{"nosuch"}, nil, cliapp.ExitUsage, ""},
		{"flag", []string{"--nosuch"}, nil, cliapp.ExitUsage, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *call
			var out bytes.Buffer
			err := run(tt.args, f, &out, func(p string, a []string) error {
				got = &call{p, a}
				return nil
			})
			require.Equal(t, tt.wantCode, cliapp.ExitCode(err), "err=%v", err)
			require.Equal(t, tt.wantCall, got)
			require.Contains(t, out.String(), tt.wantOut)
		})
	}
}
