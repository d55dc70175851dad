// Package hub resolves models named by Hugging Face repo id to local
// directories and downloads what is missing, sharing the cache that
// Python tools (huggingface_hub, transformers, mlx-lm) already fill.
//
// Resolver is the one entry point commands use: a local directory is used
// as is; a repo id (org/name[@revision]) is looked up in the Hugging Face
// hub cache ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub), then
// in the engine cache root (--cache-dir, $MACH_CACHE_DIR, ~/.cache/mach);
// what is still missing is downloaded (unless --local-only or
// HF_HUB_OFFLINE=1): only the files the command needs (Wanted), in
// parallel, resumable, verified against the hub's sha256 or git id before
// they are renamed into blobs/, in the hub cache layout (see cache.go) so
// Python tools reuse them.
//
// mach check's config-only resolution (NeedConfig) keeps its own fetch,
// FetchConfig: config.json and, best-effort, expert_sidecar/layout.json,
// into the engine cache root:
//
//	<root>/hub/models--<org>--<name>/
//	    refs/<revision>                     the commit the revision resolved to
//	    snapshots/<commit>/config.json
//	    snapshots/<commit>/expert_sidecar/layout.json
//
// When the hub does not report a commit (X-Repo-Commit), the snapshot
// directory is named after the revision instead.
package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/maniac-ai/mach/pkg/atomicfile"
	"github.com/maniac-ai/mach/pkg/fault"
)

// DefaultEndpoint is the public Hugging Face hub.
const DefaultEndpoint = "https://huggingface.co"

// Environment variables.
const (
	EnvEndpoint = "HF_ENDPOINT"
	EnvToken    = "HF_TOKEN"
	EnvCacheDir = "MACH_CACHE_DIR"
)

// Timeouts of one request.
const (
	DialTimeout    = 10 * time.Second
	RequestTimeout = 60 * time.Second
)

// Errors callers branch on. Every error is also classified with fault:
// fault.ErrNetwork for the hub, fault.ErrUsage for a bad repo id.
var (
	// ErrNotFound: the repo, revision or file does not exist (HTTP 404).
	ErrNotFound = errors.New("not found on the hub")
	// ErrDenied: the hub refused the token or its absence (HTTP 401/403).
	ErrDenied = errors.New("access denied by the hub")
	// ErrInvalidRepoID: the repo id is not org/name in the hub's alphabet.
	ErrInvalidRepoID = errors.New("invalid repo id")
)

// Client fetches repository files.
type Client struct {
	// Endpoint is the hub's base URL, without a trailing slash.
	Endpoint string
	// Token is sent as a bearer token when set.
	Token string
	// CacheRoot is the engine cache root; files go under CacheRoot/hub.
	CacheRoot string
	// HTTP is the client used for every request, downloads included (so
	// it must have no overall Timeout); nil means clients with DialTimeout
	// and RequestTimeout for metadata, and only a header timeout plus the
	// stall timer for downloads.
	HTTP *http.Client
}

// NewClient returns a client for the endpoint and token in the process
// environment (HF_ENDPOINT; HF_TOKEN or the token file, see Token) caching
// under cacheRoot.
func NewClient(cacheRoot string) *Client {
	return NewClientEnv(os.Getenv, cacheRoot)
}

// CacheRoot returns the engine cache root: override when set, else
// $MACH_CACHE_DIR, else ~/.cache/mach (MachCacheDir with the process
// environment).
func CacheRoot(override string) (string, error) {
	if d := MachCacheDir(os.Getenv, override); d != "" {
		return d, nil
	}
	return "", fault.Mark(fmt.Errorf("no cache directory: no home directory; pass --cache-dir or set %s", EnvCacheDir), fault.ErrUsage)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{
		Timeout: RequestTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: DialTimeout}).DialContext,
			TLSHandshakeTimeout:   DialTimeout,
			ResponseHeaderTimeout: RequestTimeout,
		},
	}
}

// ValidateRepoID checks that id is "org/name" as the hub allows it: each
// part 1–96 characters of letters, digits, '-', '_' and '.', not starting
// or ending with '-' or '.', without "--" or "..".
func ValidateRepoID(id string) error {
	bad := func(why string) error {
		return fault.Mark(fmt.Errorf("%w %q: %s (want org/name, e.g. mlx-community/Qwen3-30B-A3B-4bit)", ErrInvalidRepoID, id, why), fault.ErrUsage)
	}
	org, name, ok := strings.Cut(id, "/")
	if !ok || strings.Contains(name, "/") {
		return bad("want exactly one '/'")
	}
	for _, part := range []string{org, name} {
		switch {
		case part == "":
			return bad("empty part")
		case len(part) > 96:
			return bad("a part is longer than 96 characters")
		case strings.Contains(part, "..") || strings.Contains(part, "--"):
			return bad(`".." and "--" are not allowed`)
		case strings.IndexAny(part[:1], "-.") == 0 || strings.IndexAny(part[len(part)-1:], "-.") == 0:
			return bad("a part starts or ends with '-' or '.'")
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return bad(fmt.Sprintf("character %q is not allowed", r))
			}
		}
	}
	return nil
}

// ValidateRevision checks a revision (branch, tag or commit): no "..", no
// leading '/', and only characters that are safe in a path.
func ValidateRevision(rev string) error {
	bad := func(why string) error {
		return fault.Mark(fmt.Errorf("invalid revision %q: %s", rev, why), fault.ErrUsage)
	}
	switch {
	case rev == "":
		return bad("empty")
	case len(rev) > 256:
		return bad("longer than 256 characters")
	case strings.HasPrefix(rev, "/") || strings.HasSuffix(rev, "/") || strings.Contains(rev, "//"):
		return bad("misplaced '/'")
	}
	for _, seg := range strings.Split(rev, "/") {
		if seg == "." || seg == ".." {
			return bad(`"." and ".." are not allowed`)
		}
	}
	for _, r := range rev {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./+", r)) {
			return bad(fmt.Sprintf("character %q is not allowed", r))
		}
	}
	return nil
}

// RepoDir is the cache directory of a repo: <root>/hub/models--org--name.
func (c *Client) RepoDir(repo string) string {
	return filepath.Join(c.CacheRoot, "hub", "models--"+strings.ReplaceAll(repo, "/", "--"))
}

// URL is the resolve URL of a file: {endpoint}/{repo}/resolve/{revision}/{file}.
func (c *Client) URL(repo, revision, file string) string {
	segs := strings.Split(file, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return c.Endpoint + "/" + repo + "/resolve/" + url.PathEscape(revision) + "/" + strings.Join(segs, "/")
}

// response is one fetched file.
type response struct {
	body   []byte
	commit string
}

// fetch GETs u (for repo at revision), refuses an error status, and reads
// at most maxBytes+1 bytes of the body, so that the caller can tell one
// that is too long.
func (c *Client) fetch(ctx context.Context, repo, revision, u string, maxBytes int64) ([]byte, http.Header, error) {
	resp, err := c.do(ctx, http.MethodGet, u, nil, c.httpClient())
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if err := statusError(resp, c, repo, revision, u); err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, nil, fault.Mark(fmt.Errorf("read %s: %v", u, err), fault.ErrNetwork)
	}
	return body, resp.Header, nil
}

// get fetches one file, reading at most maxBytes.
func (c *Client) get(ctx context.Context, repo, revision, file string, maxBytes int64) (*response, error) {
	u := c.URL(repo, revision, file)
	body, header, err := c.fetch(ctx, repo, revision, u, maxBytes)
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > maxBytes {
		return nil, fault.Mark(fmt.Errorf("%s is larger than %d bytes; not a metadata file", u, maxBytes), fault.ErrNetwork)
	}
	return &response{body: body, commit: header.Get("X-Repo-Commit")}, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func isCommit(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// snapshotName is the snapshot directory for a fetch.
func snapshotName(revision, commit string) string {
	if isCommit(commit) {
		return commit
	}
	return strings.ReplaceAll(revision, "/", "--")
}

// store writes body to the snapshot atomically.
func store(snapshot, file string, body []byte) error {
	p := filepath.Join(snapshot, filepath.FromSlash(file))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fault.Mark(fmt.Errorf("create cache directory: %w", err), fault.ErrIO)
	}
	if err := atomicfile.WriteFile(p, body, 0o644); err != nil {
		return fault.Mark(fmt.Errorf("write %s: %w", p, err), fault.ErrIO)
	}
	return nil
}

// cachedSnapshot returns the snapshot directory a previous fetch of
// revision left, or "" when none has file.
func (c *Client) cachedSnapshot(repo, revision, file string) string {
	repoDir := c.RepoDir(repo)
	names := []string{snapshotName(revision, "")}
	if b, err := os.ReadFile(filepath.Join(repoDir, "refs", filepath.FromSlash(revision))); err == nil {
		if commit := strings.TrimSpace(string(b)); isCommit(commit) {
			names = append([]string{commit}, names...)
		}
	}
	for _, n := range names {
		d := filepath.Join(repoDir, "snapshots", n)
		if _, err := os.Stat(filepath.Join(d, filepath.FromSlash(file))); err == nil {
			return d
		}
	}
	return ""
}

// Metadata files mach check fetches, and their size limits.
const (
	ConfigFile    = "config.json"
	LayoutFile    = "expert_sidecar/layout.json"
	maxConfigSize = 16 << 20
	maxLayoutSize = 64 << 20
)

// Snapshot is a config-only fetch.
type Snapshot struct {
	// Dir is the local snapshot directory holding config.json (and
	// expert_sidecar/layout.json when HasLayout).
	Dir       string
	Repo      string
	Revision  string
	Commit    string
	HasLayout bool
	// FromCache: the hub could not be reached and a cached copy was used.
	FromCache bool
	// Warnings are non-fatal problems (the layout.json fetch failing, a
	// stale cache being used).
	Warnings []string
}

// FetchConfig fetches config.json of repo at revision and, best-effort,
// expert_sidecar/layout.json, into the cache. Nothing else is requested.
// When the hub cannot be reached (fault.ErrNetwork other than 401/403/404)
// and a cached copy exists, the cached copy is used with a warning.
func (c *Client) FetchConfig(ctx context.Context, repo, revision string) (*Snapshot, error) {
	if err := ValidateRepoID(repo); err != nil {
		return nil, err
	}
	if err := ValidateRevision(revision); err != nil {
		return nil, err
	}
	s := &Snapshot{Repo: repo, Revision: revision}
	resp, err := c.get(ctx, repo, revision, ConfigFile, maxConfigSize)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrDenied) || !errors.Is(err, fault.ErrNetwork) {
			return nil, err
		}
		if d := c.cachedSnapshot(repo, revision, ConfigFile); d != "" {
			s.Dir, s.FromCache = d, true
			s.Warnings = append(s.Warnings, fmt.Sprintf("%v; using the cached copy in %s", err, d))
			_, lerr := os.Stat(filepath.Join(d, filepath.FromSlash(LayoutFile)))
			s.HasLayout = lerr == nil
			return s, nil
		}
		return nil, err
	}
	s.Commit = resp.commit
	repoDir := c.RepoDir(repo)
	s.Dir = filepath.Join(repoDir, "snapshots", snapshotName(revision, resp.commit))
	if err := store(s.Dir, ConfigFile, resp.body); err != nil {
		return nil, err
	}
	if isCommit(resp.commit) && resp.commit != revision {
		ref := filepath.Join(repoDir, "refs", filepath.FromSlash(revision))
		if err := os.MkdirAll(filepath.Dir(ref), 0o755); err == nil {
			_ = atomicfile.WriteFile(ref, []byte(resp.commit), 0o644)
		}
	}
	// layout.json is optional: most repos have none.
	lrev := revision
	if isCommit(resp.commit) {
		lrev = resp.commit // the same snapshot as config.json
	}
	lresp, err := c.get(ctx, repo, lrev, LayoutFile, maxLayoutSize)
	switch {
	case err == nil:
		if err := store(s.Dir, LayoutFile, lresp.body); err != nil {
			return nil, err
		}
		s.HasLayout = true
	case errors.Is(err, ErrNotFound):
		_ = os.Remove(filepath.Join(s.Dir, filepath.FromSlash(LayoutFile)))
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		s.Warnings = append(s.Warnings, fmt.Sprintf("expert_sidecar/layout.json not fetched: %v", err))
	}
	return s, nil
}

// LooksLikeRepoID reports whether s is shaped like org/name rather than a
// path: exactly one '/', not starting with '/', '.', or '~'. A shaped but
// invalid id (org/.., bad characters) is for ValidateRepoID to explain.
func LooksLikeRepoID(s string) bool {
	if s == "" || filepath.IsAbs(s) || strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") ||
		strings.HasPrefix(s, "~") || strings.Contains(s, `\`) {
		return false
	}
	return strings.Count(s, "/") == 1
}
