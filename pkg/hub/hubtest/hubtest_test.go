package hubtest_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/maniac-ai/mach/pkg/hub/hubtest"
	"github.com/stretchr/testify/require"
)

func TestServerWithResolver(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"config.json": `{"model_type":"qwen3_moe"}`, "tokenizer.json": `{}`, "model.safetensors": "weights", "README.md": "hi"}
	for n, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(src, n), []byte(b), 0o644))
	}
	s := hubtest.New(t)
	s.AddDir(t, "org/m", src)
	env := map[string]string{"HF_HUB_CACHE": t.TempDir(), "HF_ENDPOINT": s.URL}
	r := hub.NewResolver(hub.Options{Getenv: func(k string) string { return env[k] }, CacheDir: t.TempDir()})
	m, err := r.Resolve(context.Background(), "org/m", hub.Request{Need: hub.NeedWeights | hub.NeedTokenizer})
	require.NoError(t, err)
	require.Equal(t, hubtest.Commit, m.Commit)
	for n, b := range files {
		got, err := os.ReadFile(filepath.Join(m.Dir, n))
		if n == "README.md" {
			require.True(t, os.IsNotExist(err))
			continue
		}
		require.NoError(t, err)
		require.Equal(t, b, string(got))
	}
	require.Equal(t, []string{
		"GET /api/models/org/m/revision/main",
		"GET /org/m/resolve/" + hubtest.Commit + "/config.json",
		"GET /org/m/resolve/" + hubtest.Commit + "/model.safetensors",
		"GET /org/m/resolve/" + hubtest.Commit + "/tokenizer.json",
	}, slices.Sorted(slices.Values(s.Requests())))
}
