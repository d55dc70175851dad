package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/maniac-ai/mach/pkg/hub/hubtest"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

func TestCheckpointArg(t *testing.T) {
	parse := func(args ...string) (string, error) {
		app := newApp(defaultDeps())
		set := flag.NewFlagSet("mach-serve", flag.ContinueOnError)
		for _, f := range app.Flags {
			require.NoError(t, f.Apply(set))
		}
		require.NoError(t, set.Parse(args))
		return checkpointArg(cli.NewContext(app, set, nil))
	}
	got, err := parse("./ckpt")
	require.NoError(t, err)
	require.Equal(t, "./ckpt", got)
	got, err = parse("--checkpoint", "org/name")
	require.NoError(t, err)
	require.Equal(t, "org/name", got)
	got, err = parse()
	require.NoError(t, err)
	require.Empty(t, got, "none given: the default model")
	for _, args := range [][]string{{"a", "b"}, {"--checkpoint", "a", "b"}, {"a", "--checkpoint", "b"}} {
		_, err := parse(args...)
		require.ErrorIs(t, err, fault.ErrUsage, args)
	}
}

func TestResolveCheckpoint(t *testing.T) {
	srv := hubtest.New(t)
	for name, body := range map[string]string{
		"config.json": `{"model_type":"qwen3_moe"}`, "tokenizer.json": `{}`, "model.safetensors": "w",
		"expert_sidecar/layout.json": `{}`, "expert_sidecar/layer_00.bin": "x",
	} {
		srv.AddFile("org/m", name, []byte(body))
	}
	env := map[string]string{"HF_HUB_CACHE": t.TempDir(), "HF_ENDPOINT": srv.URL}
	getenv := func(k string) string { return env[k] }
	var stderr bytes.Buffer
	m, err := resolveCheckpoint(context.Background(), getenv, resolveOptions{Checkpoint: "org/m", CacheDir: t.TempDir()}, &stderr)
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(m.Dir, "expert_sidecar", "layer_00.bin"))
	require.True(t, os.IsNotExist(err), "resident serving does not download the sidecar")
	m, err = resolveCheckpoint(context.Background(), getenv, resolveOptions{Checkpoint: "org/m", Streaming: true}, &stderr)
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(m.Dir, "expert_sidecar", "layer_00.bin"))
	require.NoError(t, err, "--streaming brings the sidecar")
	require.Equal(t, hub.SourceDownload, m.Source)

	_, err = resolveCheckpoint(context.Background(), getenv, resolveOptions{Checkpoint: "org/other", LocalOnly: true}, &stderr)
	require.Equal(t, cliapp.ExitIO, cliapp.ExitCode(err))
}
