package hub_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/stretchr/testify/require"
)

const repo = "org/model"

// blob returns n bytes of deterministic, position-dependent content.
func blob(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7+i/251)
	}
	return b
}

// modelFiles is a repo with everything a real one has: what the engine
// needs and a lot it must never download.
func modelFiles() map[string]fakeFile {
	git := func(s string) fakeFile { return fakeFile{body: []byte(s)} }
	lfs := func(seed byte, n int) fakeFile { return fakeFile{body: blob(seed, n), lfs: true} }
	return map[string]fakeFile{
		".gitattributes":          git("*.safetensors filter=lfs\n"),
		"README.md":               git("# model\n"),
		"config.json":             git(`{"model_type":"qwen3_moe"}`),
		"generation_config.json":  git(`{"eos_token_id":2}`),
		"tokenizer.json":          git(`{"model":{"type":"BPE"}}`),
		"tokenizer_config.json":   git(`{"add_bos_token":false}`),
		"special_tokens_map.json": git(`{"eos_token":"</s>"}`),
		"chat_template.jinja":     git(`{{ messages }}`),
		"model.safetensors.index.json": git(`{"metadata":{},"weight_map":{
			"a.weight":"model-00001-of-00002.safetensors","b.weight":"model-00002-of-00002.safetensors"}}`),
		"model-00001-of-00002.safetensors":  lfs(1, 300_000),
		"model-00002-of-00002.safetensors":  lfs(2, 200_001),
		"model-q8.safetensors":              lfs(3, 1000), // another quantization, not in the index
		"model-Q4_K_M.gguf":                 lfs(4, 1000),
		"original/consolidated.safetensors": lfs(5, 1000),
		"images/diagram.png":                lfs(6, 1000),
		"expert_sidecar/layout.json":        git(`{"format":"mach-expert-sidecar"}`),
		"expert_sidecar/layer_00.bin":       lfs(7, 4096),
	}
}

func newResolver(t *testing.T, f *hfHub) *hub.Resolver {
	t.Helper()
	c := f.client()
	return &hub.Resolver{
		HFCache: t.TempDir(), MachRoot: c.CacheRoot, Client: c,
		Workers: 4, Retries: 3, RetryWait: time.Millisecond, Stall: 5 * time.Second,
	}
}

// gets are the GET requests of a log, without ranges.
func gets(log []string) []string {
	var out []string
	for _, l := range log {
		if strings.HasPrefix(l, "GET ") {
			p, _, _ := strings.Cut(strings.TrimPrefix(l, "GET "), " ")
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func resolvePath(file string) string { return "/" + repo + "/resolve/" + hubCommit + "/" + file }

func TestDownloadsOnlyNeededFilesIntoHFLayout(t *testing.T) {
	files := modelFiles()
	f := newHFHub(t, repo, files)
	r := newResolver(t, f)
	m, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights | hub.NeedTokenizer})
	require.NoError(t, err)

	want := []string{"/api/models/" + repo + "/revision/main"}
	for _, p := range []string{"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
		"special_tokens_map.json", "chat_template.jinja", "model.safetensors.index.json",
		"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"} {
		want = append(want, resolvePath(p))
	}
	slices.Sort(want)
	require.Equal(t, want, gets(f.log()), "only the engine's files; never README, images, original/, other quantizations, GGUF or the sidecar")
	require.Zero(t, f.cdnAuth, "the token never goes to the CDN")
	require.Contains(t, f.log(), "CDN GET /cdn/"+files["model-00001-of-00002.safetensors"].sha256(), "LFS files come through the redirect")

	repoDir := filepath.Join(r.HFCache, "models--org--model")
	require.Equal(t, filepath.Join(repoDir, "snapshots", hubCommit), m.Dir)
	require.Equal(t, hub.SourceDownload, m.Source)
	require.Equal(t, hubCommit, m.Commit)
	require.Len(t, m.Downloaded, 9)
	ref, err := os.ReadFile(filepath.Join(repoDir, "refs", "main"))
	require.NoError(t, err)
	require.Equal(t, hubCommit, string(ref), "refs/main holds the commit, no newline, as huggingface_hub writes it")
	for name, ff := range files {
		p := filepath.Join(m.Dir, filepath.FromSlash(name))
		target, err := os.Readlink(p)
		if !slices.Contains(want, resolvePath(name)) {
			require.True(t, os.IsNotExist(err), "%s must not be downloaded", name)
			continue
		}
		require.NoError(t, err, "%s is a symlink", name)
		require.False(t, filepath.IsAbs(target), "relative links, so the cache can move")
		require.Equal(t, filepath.Join(repoDir, "blobs", ff.etag()), filepath.Join(filepath.Dir(p), target))
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		require.True(t, bytes.Equal(ff.body, got), name)
		_, err = os.Stat(filepath.Join(repoDir, "blobs", ff.etag()))
		require.NoError(t, err, "blob named after the ETag (LFS sha256 or git id)")
	}
	incompletes, _ := filepath.Glob(filepath.Join(repoDir, "blobs", "*.incomplete"))
	require.Empty(t, incompletes)
	require.Empty(t, hub.Missing(m.Dir, hub.NeedWeights|hub.NeedTokenizer))

	// A second resolve finds everything in the cache: no request at all.
	f.reset()
	m2, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights | hub.NeedTokenizer})
	require.NoError(t, err)
	require.Empty(t, f.log())
	require.Equal(t, m.Dir, m2.Dir)
	require.Equal(t, hub.SourceHFCache, m2.Source)

	// Streaming adds the sidecar and nothing else.
	f.reset()
	m3, err := r.Resolve(context.Background(), repo+"@"+hubCommit, hub.Request{Need: hub.NeedWeights | hub.NeedSidecar})
	require.NoError(t, err)
	require.Equal(t, []string{
		"/api/models/" + repo + "/revision/" + hubCommit,
		resolvePath("expert_sidecar/layer_00.bin"),
		resolvePath("expert_sidecar/layout.json"),
	}, gets(f.log()))
	require.True(t, m3.HasLayout)
	require.Len(t, m3.Downloaded, 2, "the rest is already in blobs/")
}

func TestPrepopulatedHFCacheNeedsNoRequest(t *testing.T) {
	f := newHFHub(t, repo, nil)
	home := t.TempDir()
	// A cache as huggingface_hub leaves it: blobs, relative links, refs.
	hubDir := filepath.Join(home, "hub", "models--org--model")
	snap := filepath.Join(hubDir, "snapshots", "abcdef0123456789abcdef0123456789abcdef01")
	put := func(name string, body string) {
		etag := fakeFile{body: []byte(body)}.gitID()
		require.NoError(t, os.MkdirAll(filepath.Join(hubDir, "blobs"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(hubDir, "blobs", etag), []byte(body), 0o644))
		p := filepath.Join(snap, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.Symlink(filepath.Join("..", "..", "blobs", etag), p))
	}
	put("config.json", `{"model_type":"gpt_oss"}`)
	put("tokenizer.json", `{}`)
	put("model.safetensors", "weights")
	require.NoError(t, os.MkdirAll(filepath.Join(hubDir, "refs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(hubDir, "refs", "main"), []byte("abcdef0123456789abcdef0123456789abcdef01"), 0o644))

	env := map[string]string{"HF_HOME": home, "HF_ENDPOINT": f.srv.URL, "HOME": t.TempDir()}
	r := hub.NewResolver(hub.Options{Getenv: func(k string) string { return env[k] }})
	require.Equal(t, filepath.Join(home, "hub"), r.HFCache)
	for _, need := range []hub.Need{hub.NeedConfig, hub.NeedTokenizer, hub.NeedWeights, hub.NeedWeights | hub.NeedTokenizer} {
		m, err := r.Resolve(context.Background(), repo, hub.Request{Need: need})
		require.NoError(t, err, need)
		require.Equal(t, snap, m.Dir, need)
		require.Equal(t, hub.SourceHFCache, m.Source)
		require.False(t, m.ConfigOnly, "a complete snapshot is inspected in full")
	}
	require.Empty(t, f.log(), "a pre-populated cache is used without any request")
}

func TestResumeAfterDroppedConnection(t *testing.T) {
	files := modelFiles()
	const shard = "model-00001-of-00002.safetensors"
	f := newHFHub(t, repo, files)
	f.dropAfter[shard] = 123_457
	r := newResolver(t, f)
	m, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(m.Dir, shard))
	require.NoError(t, err)
	require.True(t, bytes.Equal(files[shard].body, got))
	cdn := "CDN GET /cdn/" + files[shard].sha256()
	require.Contains(t, f.log(), cdn, "first try")
	require.Contains(t, f.log(), cdn+" bytes=123457-", "the retry asks for the rest only")
}

func TestInterruptedRunResumesNextTime(t *testing.T) {
	files := modelFiles()
	const shard = "model-00002-of-00002.safetensors"
	f := newHFHub(t, repo, files)
	f.dropAfter[shard] = 100_000
	r := newResolver(t, f)
	r.Retries = 0 // the first run gives up at the drop, like an interrupted one
	_, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
	require.Error(t, err)
	require.ErrorIs(t, err, fault.ErrNetwork)
	require.Contains(t, err.Error(), shard)

	repoDir := filepath.Join(r.HFCache, "models--org--model")
	etag := files[shard].sha256()
	st, err := os.Stat(filepath.Join(repoDir, "blobs", etag+".incomplete"))
	require.NoError(t, err, "the partial download stays for the next run")
	require.EqualValues(t, 100_000, st.Size())
	_, err = os.Stat(filepath.Join(repoDir, "blobs", etag))
	require.True(t, os.IsNotExist(err), "never a blob that is not verified")
	_, err = os.Lstat(filepath.Join(repoDir, "snapshots", hubCommit, shard))
	require.True(t, os.IsNotExist(err))
	_, err = os.Stat(filepath.Join(repoDir, "refs", "main"))
	require.True(t, os.IsNotExist(err), "refs/main is written once the snapshot is complete")

	f.reset()
	m, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
	require.NoError(t, err)
	require.Contains(t, f.log(), "CDN GET /cdn/"+etag+" bytes=100000-")
	for _, l := range f.log() {
		require.NotEqual(t, "CDN GET /cdn/"+etag, l, "the shard is never fetched from the start again")
	}
	got, err := os.ReadFile(filepath.Join(m.Dir, shard))
	require.NoError(t, err)
	require.True(t, bytes.Equal(files[shard].body, got))
}

func TestServerIgnoringRangeRestartsTheFile(t *testing.T) {
	files := modelFiles()
	const shard = "model-00002-of-00002.safetensors"
	f := newHFHub(t, repo, files)
	f.dropAfter[shard] = 50_000
	f.noRange = true
	r := newResolver(t, f)
	m, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(m.Dir, shard))
	require.NoError(t, err)
	require.True(t, bytes.Equal(files[shard].body, got), "a 200 to a Range request starts the file over")
}

func TestStalledBodyIsResumed(t *testing.T) {
	files := modelFiles()
	const shard = "model-00001-of-00002.safetensors"
	f := newHFHub(t, repo, files)
	f.stallAfter[shard] = 4096
	r := newResolver(t, f)
	r.Stall = 100 * time.Millisecond
	m, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
	require.NoError(t, err)
	require.Contains(t, f.log(), "CDN GET /cdn/"+files[shard].sha256()+" bytes=4096-")
	got, err := os.ReadFile(filepath.Join(m.Dir, shard))
	require.NoError(t, err)
	require.True(t, bytes.Equal(files[shard].body, got))
}

func TestCorruptedBodyIsRejected(t *testing.T) {
	for _, name := range []string{"model-00001-of-00002.safetensors", "tokenizer.json"} {
		t.Run(name, func(t *testing.T) {
			files := modelFiles()
			f := newHFHub(t, repo, files)
			f.corrupt[name] = true
			r := newResolver(t, f)
			_, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
			require.ErrorIs(t, err, hub.ErrChecksum)
			require.ErrorIs(t, err, fault.ErrNetwork)
			require.Contains(t, err.Error(), name)
			require.Contains(t, err.Error(), "run again")
			repoDir := filepath.Join(r.HFCache, "models--org--model")
			etag := files[name].etag()
			for _, p := range []string{
				filepath.Join(repoDir, "blobs", etag),
				filepath.Join(repoDir, "blobs", etag+".incomplete"),
				filepath.Join(repoDir, "snapshots", hubCommit, name),
			} {
				_, err := os.Lstat(p)
				require.True(t, os.IsNotExist(err), "%s must not exist", p)
			}
			// Fixed upstream: the next run downloads it cleanly.
			f.corrupt[name] = false
			_, err = r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
			require.NoError(t, err)
		})
	}
}

func TestGatedAndPrivateRepos(t *testing.T) {
	t.Run("gated: listing public, files 401", func(t *testing.T) {
		f := newHFHub(t, repo, modelFiles())
		f.errorCode = "GatedRepo"
		for p := range f.files {
			f.status[p] = http.StatusUnauthorized
		}
		r := newResolver(t, f)
		r.Client.Token = ""
		_, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
		require.ErrorIs(t, err, hub.ErrDenied)
		require.ErrorIs(t, err, fault.ErrNetwork)
		for _, s := range []string{"HTTP 401", "is gated", f.srv.URL + "/" + repo, "HF_TOKEN", "huggingface-cli login", "hub says: Access to model org/model is restricted."} {
			require.Contains(t, err.Error(), s)
		}
		blobs, _ := filepath.Glob(filepath.Join(r.HFCache, "models--org--model", "blobs", "*"))
		for _, b := range blobs {
			require.NotContains(t, b, ".incomplete", "a denied file leaves nothing behind")
		}
	})
	t.Run("private: listing 401 with a token", func(t *testing.T) {
		f := newHFHub(t, repo, modelFiles())
		f.status["listing"] = http.StatusUnauthorized
		r := newResolver(t, f)
		_, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
		require.ErrorIs(t, err, hub.ErrDenied)
		require.Contains(t, err.Error(), "has no access to org/model")
		require.Equal(t, []string{"/api/models/" + repo + "/revision/main"}, gets(f.log()))
	})
	t.Run("403", func(t *testing.T) {
		f := newHFHub(t, repo, modelFiles())
		f.status["config.json"] = http.StatusForbidden
		r := newResolver(t, f)
		_, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
		require.ErrorIs(t, err, hub.ErrDenied)
		require.Contains(t, err.Error(), "HTTP 403")
	})
	t.Run("unknown revision", func(t *testing.T) {
		f := newHFHub(t, repo, modelFiles())
		r := newResolver(t, f)
		_, err := r.Resolve(context.Background(), repo+"@v9", hub.Request{})
		require.ErrorIs(t, err, hub.ErrNotFound)
		require.Contains(t, err.Error(), "no revision v9")
	})
	t.Run("server error is retried, then reported", func(t *testing.T) {
		f := newHFHub(t, repo, modelFiles())
		f.status["config.json"] = http.StatusBadGateway
		r := newResolver(t, f)
		_, err := r.Resolve(context.Background(), repo, hub.Request{})
		require.ErrorIs(t, err, fault.ErrNetwork)
		require.Contains(t, err.Error(), "HTTP 502")
		n := 0
		for _, l := range f.log() {
			if strings.HasSuffix(l, "/config.json") {
				n++
			}
		}
		require.Equal(t, 1+r.Retries, n)
	})
}

func TestOfflineNeverTouchesTheNetwork(t *testing.T) {
	f := newHFHub(t, repo, modelFiles())
	r := newResolver(t, f)
	for _, why := range []string{"--local-only", "HF_HUB_OFFLINE=1"} {
		r.Offline, r.OfflineWhy = true, why
		_, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
		require.ErrorIs(t, err, fault.ErrIO)
		require.Contains(t, err.Error(), "not in the model caches")
		require.Contains(t, err.Error(), why)
		require.Contains(t, err.Error(), "missing: every file")
	}
	// Partly cached: the message names the missing files.
	r.Offline = false
	_, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedTokenizer})
	require.NoError(t, err)
	f.reset()
	r.Offline = true
	_, err = r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "only partly cached")
	require.Contains(t, err.Error(), "model*.safetensors")
	// The config that is there serves mach check.
	m, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedConfig})
	require.NoError(t, err)
	require.True(t, m.ConfigOnly)
	require.Empty(t, f.log())

	env := map[string]string{"HF_HUB_OFFLINE": "true", "HF_ENDPOINT": f.srv.URL}
	r2 := hub.NewResolver(hub.Options{Getenv: func(k string) string { return env[k] }, CacheDir: t.TempDir()})
	require.True(t, r2.Offline)
	_, err = r2.Resolve(context.Background(), "org/other", hub.Request{})
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "HF_HUB_OFFLINE=1")
	require.Empty(t, f.log())
}

func TestMirrorWithoutBlobMetadata(t *testing.T) {
	files := modelFiles()
	f := newHFHub(t, repo, files)
	f.noBlobs = true
	r := newResolver(t, f)
	m, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
	require.NoError(t, err)
	var heads []string
	for _, l := range f.log() {
		if strings.HasPrefix(l, "HEAD ") {
			heads = append(heads, l)
		}
	}
	require.NotEmpty(t, heads, "ETags come from HEAD when the listing lacks them")
	for _, l := range f.log() {
		require.False(t, strings.HasPrefix(l, "CDN HEAD"), "HEAD reads the hub's headers, not the CDN's: %s", l)
	}
	shard := "model-00001-of-00002.safetensors"
	_, err = os.Stat(filepath.Join(r.HFCache, "models--org--model", "blobs", files[shard].sha256()))
	require.NoError(t, err, "blob named after X-Linked-Etag")
	require.Empty(t, hub.Missing(m.Dir, hub.NeedWeights))

	// Verification still applies.
	f2 := newHFHub(t, repo, modelFiles())
	f2.noBlobs = true
	f2.corrupt[shard] = true
	_, err = newResolver(t, f2).Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
	require.ErrorIs(t, err, hub.ErrChecksum)
}

func TestConfigOnlyResolution(t *testing.T) {
	f := newHFHub(t, repo, modelFiles())
	r := newResolver(t, f)
	// Not cached: mach check's config-only fetch, into the engine cache.
	m, err := r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedConfig})
	require.NoError(t, err)
	require.True(t, m.ConfigOnly)
	require.Equal(t, hub.SourceConfigFetch, m.Source)
	require.True(t, m.HasLayout)
	require.Equal(t, filepath.Join(r.MachRoot, "hub", "models--org--model", "snapshots", hubCommit), m.Dir)
	require.Equal(t, []string{"/" + repo + "/resolve/" + hubCommit + "/expert_sidecar/layout.json", "/" + repo + "/resolve/main/config.json"}, gets(f.log()))

	// Once the weights are downloaded, mach check inspects them.
	_, err = r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedWeights})
	require.NoError(t, err)
	f.reset()
	m, err = r.Resolve(context.Background(), repo, hub.Request{Need: hub.NeedConfig})
	require.NoError(t, err)
	require.False(t, m.ConfigOnly)
	require.Equal(t, hub.SourceHFCache, m.Source)
	require.Empty(t, f.log())
}

func TestResolveArguments(t *testing.T) {
	f := newHFHub(t, repo, modelFiles())
	r := newResolver(t, f)
	dir := t.TempDir()
	file := filepath.Join(dir, "config.json")
	require.NoError(t, os.WriteFile(file, []byte("{}"), 0o644))

	m, err := r.Resolve(context.Background(), dir, hub.Request{})
	require.NoError(t, err)
	require.Equal(t, hub.Model{Dir: dir, Source: hub.SourcePath}, *m, "a directory is used as is")

	tests := []struct {
		ref, rev string
		is       error
		want     string
	}{
		{file, "", fault.ErrUsage, "is a file"},
		{"./no/such/dir", "", fault.ErrIO, "no such directory, and not a Hugging Face repo id"},
		{"/abs/x", "", fault.ErrIO, "no such directory"},
		{"org/..", "", fault.ErrUsage, `".." and "--" are not allowed`},
		{"org/na$me", "", fault.ErrUsage, "not allowed"},
		{"org/name@../x", "", fault.ErrUsage, "invalid revision"},
		{"org/name@v1", "v2", fault.ErrUsage, "give one"},
		{"", "", fault.ErrUsage, "empty MODEL"},
	}
	for _, tt := range tests {
		_, err := r.Resolve(context.Background(), tt.ref, hub.Request{Revision: tt.rev})
		require.ErrorIs(t, err, tt.is, tt.ref)
		require.Contains(t, err.Error(), tt.want, tt.ref)
	}
	require.Empty(t, f.log(), "bad arguments never reach the network")

	// --revision and @revision agree, or --revision is the default.
	for _, c := range []struct{ ref, rev string }{{repo, hubCommit}, {repo + "@" + hubCommit, ""}, {repo + "@" + hubCommit, "main"}, {repo + "@" + hubCommit, hubCommit}} {
		m, err := r.Resolve(context.Background(), c.ref, hub.Request{Revision: c.rev, Need: hub.NeedTokenizer})
		require.NoError(t, err, c)
		require.Equal(t, hubCommit, m.Revision)
	}
}

func TestMachCacheDirectories(t *testing.T) {
	f := newHFHub(t, repo, nil)
	r := newResolver(t, f)
	// A plain org/name checkpoint under the engine cache root.
	d := filepath.Join(r.MachRoot, "org", "model")
	require.NoError(t, os.MkdirAll(d, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(d, "config.json"), []byte("{}"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(d, "model.safetensors"), []byte("w"), 0o644))
	m, err := r.Resolve(context.Background(), repo, hub.Request{})
	require.NoError(t, err)
	require.Equal(t, d, m.Dir)
	require.Equal(t, hub.SourceMachCache, m.Source)
	require.Empty(t, f.log())
	// Only for the default revision: a plain directory has none.
	r.Offline, r.OfflineWhy = true, "--local-only"
	_, err = r.Resolve(context.Background(), repo+"@v2", hub.Request{})
	require.ErrorIs(t, err, fault.ErrIO)
}

func TestCancelLeavesResumableState(t *testing.T) {
	files := modelFiles()
	const shard = "model-00001-of-00002.safetensors"
	f := newHFHub(t, repo, files)
	f.stallAfter[shard] = 10_000
	r := newResolver(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if st, err := os.Stat(filepath.Join(r.HFCache, "models--org--model", "blobs", files[shard].sha256()+".incomplete")); err == nil && st.Size() == 10_000 {
				cancel() // Ctrl-C in the middle of the shard
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	_, err := r.Resolve(ctx, repo, hub.Request{})
	require.ErrorIs(t, err, context.Canceled)
	f.reset()
	_, err = r.Resolve(context.Background(), repo, hub.Request{})
	require.NoError(t, err)
	require.Contains(t, f.log(), "CDN GET /cdn/"+files[shard].sha256()+" bytes=10000-")
}

func TestNoLoadableWeights(t *testing.T) {
	f := newHFHub(t, repo, map[string]fakeFile{
		"config.json":       {body: []byte(`{}`)},
		"model-Q4_K_M.gguf": {body: blob(1, 10), lfs: true},
	})
	_, err := newResolver(t, f).Resolve(context.Background(), repo, hub.Request{})
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "no safetensors weights")
	require.Contains(t, err.Error(), "model-Q4_K_M.gguf")
	require.Len(t, gets(f.log()), 1, "the listing says so before anything is downloaded")

	f2 := newHFHub(t, repo, map[string]fakeFile{"README.md": {body: []byte("hi")}})
	_, err = newResolver(t, f2).Resolve(context.Background(), repo, hub.Request{})
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "no config.json")
}

func TestProgressOnATerminal(t *testing.T) {
	f := newHFHub(t, repo, modelFiles())
	r := newResolver(t, f)
	var out bytes.Buffer
	r.Progress = &out
	r.ProgressInterval = time.Millisecond
	_, err := r.Resolve(context.Background(), repo, hub.Request{})
	require.NoError(t, err)
	s := out.String()
	require.Contains(t, s, "listing org/model@main")
	require.Contains(t, s, "org/model@1111111  8/8 files")
	require.Contains(t, s, "/s")
	require.Contains(t, s, "100%")
}
