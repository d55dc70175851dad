package hub_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/stretchr/testify/require"
)

func envOf(m map[string]string) hub.Getenv { return func(k string) string { return m[k] } }

func TestHFCacheDir(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HF_HUB_CACHE": "/a", "HUGGINGFACE_HUB_CACHE": "/b", "HF_HOME": "/c", "HOME": "/h"}, "/a"},
		{map[string]string{"HUGGINGFACE_HUB_CACHE": "/b", "HF_HOME": "/c", "HOME": "/h"}, "/b"},
		{map[string]string{"HF_HOME": "/c", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/c/hub"},
		{map[string]string{"XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/huggingface/hub"},
		{map[string]string{"HOME": "/h"}, "/h/.cache/huggingface/hub"},
		{map[string]string{}, ""}, // no home: no default, never the real one in tests
	}
	for _, tt := range tests {
		require.Equal(t, filepath.FromSlash(tt.want), hub.HFCacheDir(envOf(tt.env)), tt.env)
	}
}

func TestMachCacheDirAndCacheDirs(t *testing.T) {
	env := map[string]string{"HOME": "/h"}
	require.Equal(t, "/flag", hub.MachCacheDir(envOf(env), "/flag"))
	require.Equal(t, filepath.FromSlash("/h/.cache/mach"), hub.MachCacheDir(envOf(env), ""))
	env["MACH_CACHE_DIR"] = "/m"
	require.Equal(t, "/m", hub.MachCacheDir(envOf(env), ""))
	require.Equal(t, []string{filepath.FromSlash("/h/.cache/huggingface/hub"), "/m"}, hub.CacheDirs(envOf(env), ""))
	require.Empty(t, hub.CacheDirs(envOf(nil), ""))
}

func TestToken(t *testing.T) {
	home := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(home, "token"), []byte("hf_fromfile\n"), 0o600))
	other := filepath.Join(t.TempDir(), "tok")
	require.NoError(t, os.WriteFile(other, []byte(" hf_path "), 0o600))
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HF_TOKEN": "hf_env", "HUGGING_FACE_HUB_TOKEN": "hf_old", "HF_HOME": home}, "hf_env"},
		{map[string]string{"HUGGING_FACE_HUB_TOKEN": "hf_old", "HF_HOME": home}, "hf_old"},
		{map[string]string{"HF_HOME": home}, "hf_fromfile"}, // what huggingface-cli login writes
		{map[string]string{"HF_HOME": home, "HF_TOKEN_PATH": other}, "hf_path"},
		{map[string]string{"HF_HOME": t.TempDir()}, ""},
		{map[string]string{}, ""},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, hub.Token(envOf(tt.env)), tt.env)
	}
	c := hub.NewClientEnv(envOf(map[string]string{"HF_HOME": home, "HF_ENDPOINT": "https://mirror.example/"}), "/root")
	require.Equal(t, hub.Client{Endpoint: "https://mirror.example", Token: "hf_fromfile", CacheRoot: "/root"}, *c)
}

func TestOffline(t *testing.T) {
	for v, want := range map[string]bool{"1": true, "ON": true, "yes": true, "True": true, "": false, "0": false, "false": false, "no": false} {
		require.Equal(t, want, hub.Offline(envOf(map[string]string{"HF_HUB_OFFLINE": v})), v)
	}
	require.True(t, hub.Offline(envOf(map[string]string{"TRANSFORMERS_OFFLINE": "1"})))
	r := hub.NewResolver(hub.Options{Getenv: envOf(map[string]string{"HF_HUB_OFFLINE": "1"}), LocalOnly: true})
	require.True(t, r.Offline)
	require.Equal(t, "--local-only", r.OfflineWhy)
}
