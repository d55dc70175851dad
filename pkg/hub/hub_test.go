package hub_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/stretchr/testify/require"
)

func TestValidateRepoID(t *testing.T) {
	good := []string{"mlx-community/Qwen3-Coder-30B-A3B-MLX-4bit", "z-lab/Qwen3.6-35B-A3B-DFlash", "a/b", "org_1/name.v2"}
	for _, id := range good {
		require.NoError(t, hub.ValidateRepoID(id), id)
	}
	bad := map[string]string{
		"noslash":                      "exactly one '/'",
		"a/b/c":                        "exactly one '/'",
		"/abs":                         "empty part",
		"org/":                         "empty part",
		"org/..":                       `".."`,
		"../x":                         `".."`,
		"org/a..b":                     `".."`,
		"org/a--b":                     `"--"`,
		"org/-x":                       "starts or ends",
		"org/x.":                       "starts or ends",
		"org/na me":                    "not allowed",
		"org/näme":                     "not allowed",
		"o/" + strings.Repeat("x", 97): "longer than 96",
	}
	for id, want := range bad {
		err := hub.ValidateRepoID(id)
		require.Error(t, err, id)
		require.ErrorIs(t, err, hub.ErrInvalidRepoID)
		require.ErrorIs(t, err, fault.ErrUsage)
		require.Contains(t, err.Error(), want, id)
	}
}

func TestValidateRevision(t *testing.T) {
	for _, r := range []string{"main", "v1.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567"} {
		require.NoError(t, hub.ValidateRevision(r), r)
	}
	for _, r := range []string{"", "../x", "a/../b", "/main", "main/", "a//b", "a b", "a?b"} {
		require.ErrorIs(t, hub.ValidateRevision(r), fault.ErrUsage, r)
	}
}

func TestURL(t *testing.T) {
	c := &hub.Client{Endpoint: "https://hf.example"}
	require.Equal(t, "https://hf.example/org/name/resolve/main/config.json", c.URL("org/name", "main", "config.json"))
	require.Equal(t, "https://hf.example/org/name/resolve/refs%2Fpr%2F1/expert_sidecar/layout.json", c.URL("org/name", "refs/pr/1", "expert_sidecar/layout.json"))
}

const commit = "0123456789abcdef0123456789abcdef01234567"

// fakeHub serves files and records every request path and its
// Authorization header.
type fakeHub struct {
	mu       sync.Mutex
	files    map[string]string // request path -> body
	status   map[string]int    // request path -> status
	requests []string
	auth     []string
}

func (f *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.URL.EscapedPath())
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	if s, ok := f.status[r.URL.EscapedPath()]; ok {
		w.WriteHeader(s)
		return
	}
	body, ok := f.files[r.URL.EscapedPath()]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("X-Repo-Commit", commit)
	_, _ = w.Write([]byte(body))
}

func newFake(t *testing.T, files map[string]string) (*fakeHub, *hub.Client) {
	f := &fakeHub{files: files, status: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, &hub.Client{Endpoint: srv.URL, Token: "hf_secret", CacheRoot: t.TempDir()}
}

func TestFetchConfigAndLayout(t *testing.T) {
	f, c := newFake(t, map[string]string{
		"/org/model/resolve/main/config.json":                          `{"model_type":"qwen3_moe"}`,
		"/org/model/resolve/" + commit + "/expert_sidecar/layout.json": `{"format":"mach-expert-sidecar"}`,
		"/org/model/resolve/main/model.safetensors":                    "weights must never be requested",
	})
	s, err := c.FetchConfig(context.Background(), "org/model", "main")
	require.NoError(t, err)
	require.Equal(t, []string{
		"/org/model/resolve/main/config.json",
		"/org/model/resolve/" + commit + "/expert_sidecar/layout.json",
	}, f.requests, "only config.json and layout.json, layout.json at the same commit")
	require.Equal(t, []string{"Bearer hf_secret", "Bearer hf_secret"}, f.auth)
	require.Equal(t, commit, s.Commit)
	require.True(t, s.HasLayout)
	require.False(t, s.FromCache)
	require.Empty(t, s.Warnings)
	repo := filepath.Join(c.CacheRoot, "hub", "models--org--model")
	require.Equal(t, filepath.Join(repo, "snapshots", commit), s.Dir)
	b, err := os.ReadFile(filepath.Join(s.Dir, "config.json"))
	require.NoError(t, err)
	require.Equal(t, `{"model_type":"qwen3_moe"}`, string(b))
	b, err = os.ReadFile(filepath.Join(s.Dir, "expert_sidecar", "layout.json"))
	require.NoError(t, err)
	require.Contains(t, string(b), "mach-expert-sidecar")
	ref, err := os.ReadFile(filepath.Join(repo, "refs", "main"))
	require.NoError(t, err)
	require.Equal(t, commit, string(ref))
}

func TestFetchConfigWithoutLayoutOrToken(t *testing.T) {
	f, c := newFake(t, map[string]string{"/org/model/resolve/v2/config.json": `{}`})
	c.Token = ""
	s, err := c.FetchConfig(context.Background(), "org/model", "v2")
	require.NoError(t, err)
	require.False(t, s.HasLayout)
	require.Empty(t, s.Warnings, "a repo without a sidecar is normal")
	require.Equal(t, []string{"", ""}, f.auth, "no Authorization header without HF_TOKEN")
}

func TestFetchConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		is     error
		want   string
	}{
		{"not found", http.StatusNotFound, hub.ErrNotFound, "HTTP 404"},
		{"unauthorized", http.StatusUnauthorized, hub.ErrDenied, "has no access"},
		{"forbidden", http.StatusForbidden, hub.ErrDenied, "HTTP 403"},
		{"server error", http.StatusBadGateway, fault.ErrNetwork, "HTTP 502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := newFake(t, nil)
			f.status["/org/model/resolve/main/config.json"] = tt.status
			_, err := c.FetchConfig(context.Background(), "org/model", "main")
			require.ErrorIs(t, err, tt.is)
			require.ErrorIs(t, err, fault.ErrNetwork)
			require.Contains(t, err.Error(), tt.want)
		})
	}
	t.Run("bad repo id never reaches the network", func(t *testing.T) {
		f, c := newFake(t, nil)
		_, err := c.FetchConfig(context.Background(), "org/..", "main")
		require.ErrorIs(t, err, fault.ErrUsage)
		_, err = c.FetchConfig(context.Background(), "org/model", "../../etc")
		require.ErrorIs(t, err, fault.ErrUsage)
		require.Empty(t, f.requests)
	})
	t.Run("layout failure is a warning", func(t *testing.T) {
		f, c := newFake(t, map[string]string{"/org/model/resolve/main/config.json": `{}`})
		f.status["/org/model/resolve/"+commit+"/expert_sidecar/layout.json"] = http.StatusInternalServerError
		s, err := c.FetchConfig(context.Background(), "org/model", "main")
		require.NoError(t, err)
		require.False(t, s.HasLayout)
		require.Len(t, s.Warnings, 1)
		require.Contains(t, s.Warnings[0], "HTTP 500")
	})
	t.Run("oversized config", func(t *testing.T) {
		_, c := newFake(t, map[string]string{"/org/model/resolve/main/config.json": strings.Repeat(" ", 16<<20+1)})
		_, err := c.FetchConfig(context.Background(), "org/model", "main")
		require.ErrorIs(t, err, fault.ErrNetwork)
		require.Contains(t, err.Error(), "larger than")
	})
}

func TestOfflineUsesCache(t *testing.T) {
	f, c := newFake(t, map[string]string{"/org/model/resolve/main/config.json": `{"model_type":"gpt_oss"}`})
	_, err := c.FetchConfig(context.Background(), "org/model", "main")
	require.NoError(t, err)
	_ = f

	// The hub goes away.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	c.Endpoint = dead.URL
	s, err := c.FetchConfig(context.Background(), "org/model", "main")
	require.NoError(t, err)
	require.True(t, s.FromCache)
	require.Len(t, s.Warnings, 1)
	require.Contains(t, s.Warnings[0], "are you offline?")
	require.Equal(t, filepath.Join(c.CacheRoot, "hub", "models--org--model", "snapshots", commit), s.Dir)

	// Nothing cached: a clear network error.
	_, err = c.FetchConfig(context.Background(), "org/other", "main")
	require.ErrorIs(t, err, fault.ErrNetwork)
	require.Contains(t, err.Error(), "cannot reach")
	require.Contains(t, err.Error(), "--local-only")
}

func TestCacheRoot(t *testing.T) {
	got, err := hub.CacheRoot("/x")
	require.NoError(t, err)
	require.Equal(t, "/x", got)
	t.Setenv(hub.EnvCacheDir, "/from-env")
	got, err = hub.CacheRoot("")
	require.NoError(t, err)
	require.Equal(t, "/from-env", got)
	t.Setenv(hub.EnvCacheDir, "")
	t.Setenv("HOME", "/home/u")
	got, err = hub.CacheRoot("")
	require.NoError(t, err)
	require.Equal(t, "/home/u/.cache/mach", got)
}

func TestNewClientFromEnv(t *testing.T) {
	t.Setenv(hub.EnvEndpoint, "https://mirror.example/")
	t.Setenv(hub.EnvToken, "tok")
	c := hub.NewClient("/cache")
	require.Equal(t, "https://mirror.example", c.Endpoint)
	require.Equal(t, "tok", c.Token)
	t.Setenv(hub.EnvEndpoint, "")
	require.Equal(t, hub.DefaultEndpoint, hub.NewClient("/cache").Endpoint)
}

func TestLooksLikeRepoID(t *testing.T) {
	for s, want := range map[string]bool{"org/name": true, "org/..": true, "./org/name": false, "../x": false, "/abs/x": false, "~/x": false, "name": false, "a/b/c": false} {
		require.Equal(t, want, hub.LooksLikeRepoID(s), s)
	}
}
