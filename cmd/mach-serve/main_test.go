package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/defaultmodel"
	"github.com/maniac-ai/mach/pkg/server/servertest"
	"github.com/maniac-ai/mach/pkg/sidecar/export"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for the server's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testDeps(env map[string]string) deps {
	d := defaultDeps()
	d.getenv = func(k string) string { return env[k] }
	return d
}

// runApp runs mach-serve in-process until it exits.
func runApp(ctx context.Context, d deps, args ...string) (stderr string, code int) {
	app := newApp(d)
	var errb syncBuffer
	app.Writer, app.ErrWriter = io.Discard, &errb
	code = cliapp.Run(ctx, app, cliapp.Interspersed(app, append([]string{"mach-serve"}, args...)), &errb)
	return errb.String(), code
}

func scripted(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "scripted")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, servertest.Write(dir))
	return dir
}

func TestRefusals(t *testing.T) {
	dir := scripted(t)
	// A model_type mach does not know: refused before anything loads, with
	// the registry's reason (as mach check says it).
	unknown := filepath.Join(t.TempDir(), "mixtral")
	require.NoError(t, os.Mkdir(unknown, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(unknown, "config.json"), []byte(`{"model_type": "mixtral", "num_local_experts": 8}`), 0o644))
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"two checkpoints", []string{"a", "b"}, cliapp.ExitUsage, "want one CHECKPOINT"},
		{"bad port", []string{dir, "--port", "70000"}, cliapp.ExitUsage, "--port"},
		{"bad batch", []string{dir, "--max-batch", "0"}, cliapp.ExitUsage, "--max-batch"},
		{"bad log format", []string{dir, "--log-format", "xml"}, cliapp.ExitUsage, "--log-format"},
		{"bad backend", []string{dir, "--backend", "turbo"}, cliapp.ExitUsage, "--backend"},
		{"cache without streaming", []string{dir, "--expert-cache-gb", "1"}, cliapp.ExitUsage, "needs --streaming"},
		{"dflash", []string{dir, "--backend", "dflash"}, cliapp.ExitNotImplemented, "blocked: speculative decoding"},
		{"draft without target-only", []string{dir, "--draft-dir", dir}, cliapp.ExitNotImplemented, "speculative decoding"},
		{"unsupported architecture", []string{unknown}, cliapp.ExitNo, `unsupported model_type "mixtral"`},
		{"streaming without a sidecar", []string{dir, "--streaming"}, cliapp.ExitIO, "expert_sidecar"},
		{"missing directory", []string{"./no/such/dir", "--local-only"}, cliapp.ExitIO, "no/such/dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stderr, code := runApp(t.Context(), testDeps(nil), tc.args...)
			require.Equal(t, tc.code, code, stderr)
			require.Contains(t, stderr, tc.msg)
		})
	}
}

// serve starts mach-serve and returns its base URL and a stop function
// that returns the exit status and stderr.
func serve(t *testing.T, env map[string]string, args ...string) (string, func() (int, string)) {
	t.Helper()
	d := testDeps(env)
	addr := make(chan string, 1)
	d.listening = func(a string) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	app := newApp(d)
	var errb syncBuffer
	app.Writer, app.ErrWriter = io.Discard, &errb
	done := make(chan int, 1)
	go func() {
		done <- cliapp.Run(ctx, app, cliapp.Interspersed(app, append([]string{"mach-serve", "--port", "0"}, args...)), &errb)
	}()
	select {
	case a := <-addr:
		return "http://" + a, func() (int, string) {
			cancel()
			select {
			case code := <-done:
				return code, errb.String()
			case <-time.After(10 * time.Second):
				t.Fatal("mach-serve did not stop")
				return 0, ""
			}
		}
	case code := <-done:
		cancel()
		t.Fatalf("mach-serve exited with %d: %s", code, errb.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("mach-serve did not start")
	}
	return "", nil
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

// Start-up logs the address, model and active paths; the API answers; a
// cancelled context (SIGINT/SIGTERM) shuts down cleanly with status 0.
func TestServeScripted(t *testing.T) {
	dir := scripted(t)
	url, stop := serve(t, nil, dir, "--log-format", "json", "--served-model-name", "tiny", "--max-batch", "4")
	models := getJSON(t, url+"/v1/models")
	require.Equal(t, "tiny", models["data"].([]any)[0].(map[string]any)["id"])
	caps := getJSON(t, url+"/v1/capabilities")
	paths := caps["paths"].(map[string]any)
	http := paths["openai_http"].(map[string]any)
	require.Equal(t, "ok", http["status"])
	require.Equal(t, "registered architecture (routed experts resident in memory)", http["reason"], "mach check's reason for this checkpoint")
	require.Equal(t, true, http["active"])
	require.Equal(t, true, paths["continuous_batching"].(map[string]any)["active"])
	require.Equal(t, false, paths["expert_streaming"].(map[string]any)["active"])
	require.Equal(t, paths["resident_stacked"].(map[string]any)["status"] == "ok", paths["resident_stacked"].(map[string]any)["active"],
		"resident_stacked is active exactly when the checkpoint is stacked (its gate ok) and served resident")
	require.Equal(t, 4.0, caps["serving"].(map[string]any)["max_batch"])

	resp, err := postJSON(url+"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"Hi"}]}`)
	require.NoError(t, err)
	require.Contains(t, resp, servertest.Greeting)
	code, stderr := stop()
	require.Equal(t, cliapp.ExitOK, code, stderr)
	var listening map[string]any
	for _, line := range strings.Split(stderr, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "listening" {
			listening = rec
		}
	}
	require.NotNil(t, listening, "a JSON record names the address:\n%s", stderr)
	require.Contains(t, listening["addr"], "127.0.0.1:")
	require.Equal(t, "tiny", listening["model"])
	require.Equal(t, "continuous_batching,openai_http,prefix_kv_reuse", listening["active_paths"])
	require.Contains(t, stderr, `"msg":"shutting down: draining in-flight requests"`)
}

func postJSON(url, body string) (string, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Without CHECKPOINT the default model is served.
func TestServeDefaultModel(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "models", "default"))
	require.NoError(t, err)
	url, stop := serve(t, map[string]string{defaultmodel.EnvVar: dir}, "--api-key", "k")
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var models map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&models))
	resp.Body.Close()
	require.Equal(t, "default", models["data"].([]any)[0].(map[string]any)["id"])
	// The default model is a stacked MLX checkpoint, served resident.
	req, _ = http.NewRequest(http.MethodGet, url+"/v1/capabilities", nil)
	req.Header.Set("Authorization", "Bearer k")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	var caps map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&caps))
	resp.Body.Close()
	stacked := caps["paths"].(map[string]any)["resident_stacked"].(map[string]any)
	require.Equal(t, "ok", stacked["status"], stacked)
	require.Equal(t, true, stacked["active"], "a stacked checkpoint served without --streaming is resident stacked")
	resp, err = http.Get(url + "/v1/models")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	code, stderr := stop()
	require.Equal(t, cliapp.ExitOK, code, stderr)
	require.Contains(t, stderr, "serving the default model")
}

// --streaming serves the experts from expert_sidecar/ through the expert
// cache, reports the path active and exports the cache's counters.
func TestServeStreaming(t *testing.T) {
	dir := scripted(t)
	_, err := export.Run(t.Context(), export.Options{Checkpoint: dir})
	require.NoError(t, err)
	url, stop := serve(t, nil, dir, "--streaming", "--expert-cache-gb", "0.001")
	caps := getJSON(t, url+"/v1/capabilities")
	paths := caps["paths"].(map[string]any)
	require.Equal(t, "ok", paths["expert_streaming"].(map[string]any)["status"])
	require.Equal(t, true, paths["expert_streaming"].(map[string]any)["active"])
	require.Equal(t, false, paths["resident_stacked"].(map[string]any)["active"], "--streaming: experts are not resident")
	resp, err := postJSON(url+"/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}]}`)
	require.NoError(t, err)
	require.Contains(t, resp, servertest.Greeting, "streamed experts give the same script")
	r, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(r.Body)
	r.Body.Close()
	require.NoError(t, err)
	require.Regexp(t, `mach_expert_requests_total [1-9]`, string(metrics))
	require.Contains(t, string(metrics), "mach_expert_cache_hit_ratio")
	code, stderr := stop()
	require.Equal(t, cliapp.ExitOK, code, stderr)
}

// An address already in use is an I/O error (exit 4) naming the address,
// not a usage error.
func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	stderr, code := runApp(t.Context(), testDeps(nil), scripted(t), "--port", port)
	require.Equal(t, cliapp.ExitIO, code, stderr)
	require.Contains(t, stderr, "127.0.0.1:"+port)
	require.Contains(t, stderr, "address already in use")
	require.NotContains(t, stderr, "--help' for usage")
}

// --help describes tool_choice as README does: required and named are
// served (constrained decoding), refused only without a tool-call format.
func TestHelpToolChoice(t *testing.T) {
	app := newApp(testDeps(nil))
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	code := cliapp.Run(t.Context(), app, []string{"mach-serve", "--help"}, &out)
	require.Equal(t, cliapp.ExitOK, code)
	help := strings.Join(strings.Fields(out.String()), " ")
	require.Contains(t, help, "tool_choice (auto, none, required or a named function;")
	require.Contains(t, help, "tool_choice required or a named function for a model whose chat template has no tool-call format")
	require.NotContains(t, help, "grammar- constrained decoding, which this build lacks")
	require.NotContains(t, help, "tool_choice (auto, none),")
}
