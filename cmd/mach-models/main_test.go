package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ct "github.com/maniac-ai/mach/pkg/checkpoint/checkpointtest"
	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/golden"
	"github.com/stretchr/testify/require"
)

// world is a cache root, an extra directory and an environment.
type world struct {
	cache, extra, envDir string
	env                  map[string]string
}

func newWorld(t *testing.T) *world {
	w := &world{cache: t.TempDir(), extra: t.TempDir(), envDir: t.TempDir(), env: map[string]string{}}
	weights := func(dir string, n int64) {
		ct.WriteSafetensors(t, filepath.Join(dir, "model.safetensors"), []ct.Tensor{ct.T("w", "U8", n)})
	}
	// Cache root: a downloaded hub repo, and a config-only fetch mach
	// check left behind.
	hubRepo := filepath.Join(w.cache, "hub", "models--mlx-community--Qwen3-30B-A3B-4bit")
	ct.WriteFile(t, hubRepo, "refs/main", "abc")
	ct.WriteFile(t, hubRepo, "snapshots/abc/config.json", `{"model_type":"qwen3_moe"}`)
	weights(filepath.Join(hubRepo, "snapshots", "abc"), 2_000_000)
	ct.WriteFile(t, w.cache, "hub/models--openai--gpt-oss-20b/snapshots/main/config.json", `{"model_type":"gpt_oss"}`)
	// --dir: a plain checkpoint and an unknown architecture.
	ct.WriteFile(t, w.extra, "qwen36-engine/config.json", `{"model_type":"qwen3_5_moe","text_config":{}}`)
	weights(filepath.Join(w.extra, "qwen36-engine"), 5_000)
	ct.WriteFile(t, w.extra, "llama/config.json", `{"model_type":"llama"}`)
	// LME_MODELS_DIR.
	ct.WriteFile(t, w.envDir, "gemma/config.json", `{"model_type":"gemma4"}`)
	w.env[envModelsDir] = w.envDir + string(os.PathListSeparator) + filepath.Join(w.envDir, "missing")
	return w
}

func (w *world) deps() deps {
	d := defaultDeps()
	d.getenv = func(k string) string { return w.env[k] }
	return d
}

func (w *world) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	app := newApp(w.deps())
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	argv := append([]string{"mach-models", "--cache-dir", w.cache, "--dir", w.extra}, args...)
	code := cliapp.Run(context.Background(), app, cliapp.Interspersed(app, argv), &errb)
	return out.String(), errb.String(), code
}

func TestLocalListing(t *testing.T) {
	w := newWorld(t)
	out, errOut, code := w.run(t)
	require.Equal(t, cliapp.ExitOK, code, errOut)
	require.Contains(t, errOut, "set LME_CATALOG_URL and LME_CATALOG_TOKEN", "the hint")
	require.Contains(t, errOut, "warning: LME_MODELS_DIR "+filepath.Join(w.envDir, "missing")+" does not exist")
	golden.Check(t, "local.golden", out)

	out, _, code = w.run(t, "--json")
	require.Equal(t, cliapp.ExitOK, code)
	var rows []row
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	byName := map[string]row{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	require.Len(t, byName, 5)
	q := byName["mlx-community/Qwen3-30B-A3B-4bit"]
	require.True(t, q.Installed)
	require.True(t, q.Registered)
	require.True(t, q.Supported, "this build serves qwen3_moe")
	require.Empty(t, q.Reason)
	require.Equal(t, "mlx-community/Qwen3-30B-A3B-4bit", q.RepoID)
	require.False(t, byName["openai/gpt-oss-20b"].Installed, "a config-only fetch is not installed")
	require.False(t, byName["llama"].Registered)
	require.Equal(t, `model_type "llama" is not registered`, byName["llama"].Reason)
	require.Equal(t, "local", byName["gemma"].Source, "found through LME_MODELS_DIR")
}

// TestHFCacheListed: models Python tools downloaded into the Hugging Face
// cache are listed, as the resolver would find them.
func TestHFCacheListed(t *testing.T) {
	w := newWorld(t)
	hf := t.TempDir()
	snap := filepath.Join(hf, "models--Qwen--Qwen3-30B-A3B", "snapshots", "0123456789abcdef0123456789abcdef01234567")
	ct.WriteFile(t, snap, "config.json", `{"model_type":"qwen3_moe"}`)
	ct.WriteSafetensors(t, filepath.Join(snap, "model.safetensors"), []ct.Tensor{ct.T("w", "U8", 3000)})
	ct.WriteFile(t, filepath.Join(hf, "models--Qwen--Qwen3-30B-A3B"), "refs/main", "0123456789abcdef0123456789abcdef01234567")
	w.env["HF_HUB_CACHE"] = hf
	out, errOut, code := w.run(t, "--json")
	require.Equal(t, cliapp.ExitOK, code, errOut)
	var rows []row
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	var found *row
	for i := range rows {
		if rows[i].Name == "Qwen/Qwen3-30B-A3B" {
			found = &rows[i]
		}
	}
	require.NotNil(t, found, out)
	require.True(t, found.Installed)
	require.Equal(t, "Qwen/Qwen3-30B-A3B", found.RepoID)
	require.Equal(t, snap, found.Path)
	require.Len(t, rows, 6, "the engine cache and --dir are still listed")
}

func TestLocalOnlyNeverCallsTheCatalog(t *testing.T) {
	w := newWorld(t)
	called := false
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	defer srv.Close()
	w.env[envCatalogURL], w.env[envCatalogToken] = srv.URL, "tok"
	_, errOut, code := w.run(t, "--local-only")
	require.Equal(t, cliapp.ExitOK, code)
	require.False(t, called)
	require.NotContains(t, errOut, "catalog")
}

// Directories the user names are checked, and the catalog hint names the
// variable that is missing.
func TestNamedDirsAndHalfConfiguredCatalog(t *testing.T) {
	w := newWorld(t)
	file := filepath.Join(t.TempDir(), "notadir")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	missing := filepath.Join(t.TempDir(), "typo")
	for _, tc := range []struct {
		env  map[string]string
		hint string
	}{
		{map[string]string{envCatalogURL: "http://127.0.0.1:1"}, "LME_CATALOG_URL is set but LME_CATALOG_TOKEN is not"},
		{map[string]string{envCatalogToken: "tok"}, "LME_CATALOG_TOKEN is set but LME_CATALOG_URL is not"},
	} {
		maps.Copy(w.env, tc.env)
		out, errOut, code := w.run(t, "--dir", file, "--dir", missing)
		require.Equal(t, cliapp.ExitOK, code, errOut)
		require.Contains(t, errOut, "warning: --dir "+file+" is not a directory")
		require.Contains(t, errOut, "warning: --dir "+missing+" does not exist")
		require.Contains(t, errOut, tc.hint)
		require.Contains(t, out, "qwen36-engine", "the other directories are still listed")
		delete(w.env, envCatalogURL)
		delete(w.env, envCatalogToken)
	}
}

func TestCatalogMerge(t *testing.T) {
	w := newWorld(t)
	var gotPath, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		gotPath, gotAuth = r.URL.Path, r.Header.Get("Authorization")
		_, _ = rw.Write([]byte(`{"models":[
			{"name":"mlx-community/Qwen3-30B-A3B-4bit","model_type":"qwen3_moe","size_bytes":17200000000},
			{"name":"qwen36-engine","model_type":"qwen3_5_moe","size_bytes":20000000000,"repo_id":"org/qwen36-engine"},
			{"name":"deepseek-ai/DeepSeek-V4-Flash","model_type":"deepseek_v4","size_bytes":160000000000,"future_key":1},
			{"model_type":"nameless"}]}`))
	}))
	defer srv.Close()
	w.env[envCatalogURL], w.env[envCatalogToken] = srv.URL+"/api/", "jwt"
	out, errOut, code := w.run(t)
	require.Equal(t, cliapp.ExitOK, code, errOut)
	require.Equal(t, "/api/v1/local-moe/catalog", gotPath)
	require.Equal(t, "Bearer jwt", gotAuth)
	require.NotContains(t, errOut, "LME_CATALOG_URL", "no hint when the catalog is configured")
	golden.Check(t, "merged.golden", out)
}

func TestCatalogFailuresFallBackToLocal(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"non-200", func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusUnauthorized) }, "HTTP 401 (check LME_CATALOG_TOKEN)"},
		{"malformed JSON", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte(`{"models": [`)) }, "malformed catalog JSON"},
		{"wrong shape", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte(`{"items": []}`)) }, `no "models" list`},
		{"not JSON", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte(`<html>`)) }, "want an object or a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			w.env[envCatalogURL], w.env[envCatalogToken] = srv.URL+catalogPath, "jwt"
			out, errOut, code := w.run(t)
			require.Equal(t, cliapp.ExitOK, code)
			require.Contains(t, errOut, "warning: remote catalog unavailable")
			require.Contains(t, errOut, tt.want)
			golden.Check(t, "local.golden", out)
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		w := newWorld(t)
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		w.env[envCatalogURL], w.env[envCatalogToken] = srv.URL, "jwt"
		out, errOut, code := w.run(t)
		require.Equal(t, cliapp.ExitOK, code)
		require.Contains(t, errOut, "cannot reach")
		golden.Check(t, "local.golden", out)
	})
	t.Run("bad URL", func(t *testing.T) {
		w := newWorld(t)
		w.env[envCatalogURL], w.env[envCatalogToken] = "ftp://x", "jwt"
		_, errOut, code := w.run(t)
		require.Equal(t, cliapp.ExitOK, code)
		require.Contains(t, errOut, "is not an http(s) URL")
	})
}

func TestCatalogURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.example.com":                          "https://api.example.com/v1/local-moe/catalog",
		"https://api.example.com/":                         "https://api.example.com/v1/local-moe/catalog",
		"https://api.example.com/base":                     "https://api.example.com/base/v1/local-moe/catalog",
		"https://api.example.com/v1/local-moe/catalog":     "https://api.example.com/v1/local-moe/catalog",
		"https://api.example.com/v1/local-moe/catalog?x=1": "https://api.example.com/v1/local-moe/catalog?x=1",
	} {
		got, err := catalogURL(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "api.example.com", "file:///etc/passwd", "http://"} {
		_, err := catalogURL(bad)
		require.Error(t, err, bad)
	}
}

func TestParseCatalog(t *testing.T) {
	got, err := parseCatalog([]byte(` [{"name":"a","size_bytes":-5},{"name":" "},{"name":"b","model_type":"gpt_oss"}] `))
	require.NoError(t, err)
	require.Equal(t, []catalogEntry{{Name: "a"}, {Name: "b", ModelType: "gpt_oss"}}, got)
	_, err = parseCatalog([]byte(`{"models":[{"name":5}]}`))
	require.Error(t, err)
}

func TestEmptyListing(t *testing.T) {
	d := defaultDeps()
	d.getenv = func(string) string { return "" }
	app := newApp(d)
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	code := cliapp.Run(context.Background(), app, []string{"mach-models", "--cache-dir", t.TempDir()}, &errb)
	require.Equal(t, cliapp.ExitOK, code)
	require.True(t, strings.HasPrefix(out.String(), "no models found"))
}

func TestUsage(t *testing.T) {
	w := newWorld(t)
	_, _, code := w.run(t, "extra-arg")
	require.Equal(t, cliapp.ExitUsage, code)
	out, _, code := w.run(t, "--help")
	require.Equal(t, cliapp.ExitOK, code)
	for _, s := range []string{"LME_CATALOG_URL", "LME_CATALOG_TOKEN", "LME_MODELS_DIR", "--local-only", "--dir", "--cache-dir", "size_bytes", "not yet", "EXAMPLES"} {
		require.Contains(t, out, s)
	}
}

// Every registered architecture is served today, so the "not yet" rendering
// (a registered model_type this build cannot serve) is checked directly.
func TestTableNotYet(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, writeTable(&buf, []row{
		{Name: "a", Source: "remote", ModelType: "future_arch", Registered: true},
		{Name: "b", Source: "local", ModelType: "qwen3_moe", Registered: true, Supported: true, Installed: true},
	}))
	out := buf.String()
	require.Contains(t, out, "future_arch  not yet")
	require.Contains(t, out, "\nnot yet: the architecture is registered but this build cannot serve it")
}
