package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"golang.org/x/sync/errgroup"
)

// DefaultRevision is the revision of a repo id without one.
const DefaultRevision = "main"

// Source says where a resolved model came from.
type Source string

const (
	// SourcePath: MODEL was a local directory, used as is.
	SourcePath Source = "path"
	// SourceHFCache: a snapshot in the Hugging Face hub cache.
	SourceHFCache Source = "hf-cache"
	// SourceMachCache: a snapshot or directory under the engine cache root.
	SourceMachCache Source = "mach-cache"
	// SourceDownload: the missing files were downloaded by this call.
	SourceDownload Source = "download"
	// SourceConfigFetch: config.json (and layout.json) fetched by
	// FetchConfig, for NeedConfig only.
	SourceConfigFetch Source = "config-fetch"
)

// Model is a resolved model directory.
type Model struct {
	// Dir is the checkpoint directory to load or inspect.
	Dir string
	// Repo, Revision and Commit are set for repo ids ("" for a path;
	// Commit "" when unknown).
	Repo, Revision, Commit string
	Source                 Source
	// ConfigOnly: Dir holds config.json (and maybe
	// expert_sidecar/layout.json) but not the weights. Only NeedConfig
	// resolves to that.
	ConfigOnly bool
	// HasLayout: Dir holds expert_sidecar/layout.json.
	HasLayout bool
	// Warnings are non-fatal problems (a stale cached config used offline).
	Warnings []string
	// Downloaded lists the files this call downloaded; DownloadedBytes
	// their size.
	Downloaded      []string
	DownloadedBytes int64
}

// Resolver turns what a user typed as MODEL (a directory, org/name or
// org/name@revision) into a local directory, downloading what is missing
// when the network is allowed. It is the one place that knows where
// models live:
//
//  1. a local directory is used as is;
//  2. the Hugging Face hub cache (HFCache), then the engine cache root
//     (MachRoot/hub in the same layout, then MachRoot/org/name as a plain
//     directory for the default revision): a snapshot that has every file
//     the Need asks for is used without any request;
//  3. otherwise, unless Offline, the repo's file list is fetched and only
//     the files the Need asks for (see Wanted) are downloaded into HFCache
//     (MachRoot/hub when HFCache is unknown), where Python tools find
//     them too. NeedConfig instead fetches config.json (and layout.json)
//     into MachRoot, as mach check always has.
type Resolver struct {
	// HFCache is the Hugging Face hub cache directory; "" when unknown.
	HFCache string
	// MachRoot is the engine cache root; "" when unknown.
	MachRoot string
	// Client talks to the hub; its CacheRoot is MachRoot.
	Client *Client
	// Offline: never touch the network. OfflineWhy names the switch for
	// messages ("--local-only", "HF_HUB_OFFLINE=1").
	Offline    bool
	OfflineWhy string
	// Workers bounds parallel file downloads (DefaultWorkers when 0).
	Workers int
	// Retries is how often a broken transfer is resumed within one call
	// before giving up (0: never; a later call still resumes). RetryWait
	// is the first pause between tries, doubled each time.
	Retries   int
	RetryWait time.Duration
	// Stall drops a connection whose body sends nothing for that long
	// (DefaultStall when 0).
	Stall time.Duration
	// Progress receives progress bars and one-line notes; nil is quiet
	// (--json, or stderr not a terminal).
	Progress io.Writer
	// ProgressInterval is the redraw period (200ms when 0).
	ProgressInterval time.Duration
}

// Options build a Resolver from the environment and flags.
type Options struct {
	// Getenv reads the environment; nil is os.Getenv.
	Getenv Getenv
	// CacheDir is --cache-dir (the engine cache root override).
	CacheDir string
	// LocalOnly is --local-only.
	LocalOnly bool
	// NewClient builds the hub client for the engine cache root; nil uses
	// NewClientEnv with Getenv.
	NewClient func(cacheRoot string) *Client
	// Progress: see Resolver.Progress.
	Progress io.Writer
}

// NewResolver returns a resolver for the environment (HF_HUB_CACHE,
// HF_HOME, MACH_CACHE_DIR, HF_ENDPOINT, HF_TOKEN or the token file,
// HF_HUB_OFFLINE) and flags.
func NewResolver(o Options) *Resolver {
	root := MachCacheDir(o.Getenv, o.CacheDir)
	r := &Resolver{
		HFCache:   HFCacheDir(o.Getenv),
		MachRoot:  root,
		Workers:   DefaultWorkers,
		Retries:   DefaultRetries,
		RetryWait: defaultRetryWait,
		Stall:     DefaultStall,
		Progress:  o.Progress,
	}
	if o.NewClient != nil {
		r.Client = o.NewClient(root)
	} else {
		r.Client = NewClientEnv(o.Getenv, root)
	}
	switch {
	case o.LocalOnly:
		r.Offline, r.OfflineWhy = true, "--local-only"
	case Offline(o.Getenv):
		r.Offline, r.OfflineWhy = true, EnvOffline+"=1"
	}
	return r
}

// Request is what a command asks Resolve for.
type Request struct {
	// Revision is --revision; "" or DefaultRevision defer to an @revision
	// in the reference. A different explicit value that contradicts one is
	// a usage error.
	Revision string
	// Need says which files must be present (NeedWeights when 0).
	Need Need
}

// SplitRef splits "org/name@revision" into the repo id and the revision
// ("" when none). It does not validate either.
func SplitRef(ref string) (repo, revision string) {
	repo, revision, _ = strings.Cut(ref, "@")
	return repo, revision
}

// Resolve finds (or fetches) the model ref names.
func (r *Resolver) Resolve(ctx context.Context, ref string, req Request) (*Model, error) {
	need := req.Need
	if need == 0 {
		need = NeedWeights
	}
	if ref == "" {
		return nil, fault.Mark(errors.New("empty MODEL: want a checkpoint directory or a Hugging Face repo id (org/name)"), fault.ErrUsage)
	}
	if st, err := os.Stat(ref); err == nil {
		if !st.IsDir() {
			return nil, fault.Mark(fmt.Errorf("%s is a file; MODEL is a checkpoint directory (holding config.json) or a repo id", ref), fault.ErrUsage)
		}
		return &Model{Dir: ref, Source: SourcePath, HasLayout: exists(filepath.Join(ref, filepath.FromSlash(LayoutFile)), -1)}, nil
	}
	repo, rev := SplitRef(ref)
	if !LooksLikeRepoID(repo) {
		return nil, fault.Mark(fmt.Errorf("%s: no such directory, and not a Hugging Face repo id (org/name)", ref), fault.ErrIO)
	}
	if err := ValidateRepoID(repo); err != nil {
		return nil, err
	}
	switch {
	case rev == "" && req.Revision == "":
		rev = DefaultRevision
	case rev == "":
		rev = req.Revision
	case req.Revision != "" && req.Revision != DefaultRevision && req.Revision != rev:
		return nil, fault.Mark(fmt.Errorf("%s names revision %s but --revision is %s; give one", ref, rev, req.Revision), fault.ErrUsage)
	}
	if err := ValidateRevision(rev); err != nil {
		return nil, err
	}

	cands := r.candidates(repo, rev)
	need |= NeedConfig
	full := need
	if need == NeedConfig {
		full = NeedConfig | NeedWeights // a complete snapshot is inspected in full
	}
	for _, c := range cands {
		if len(Missing(c.Dir, full)) == 0 {
			return c, nil
		}
	}
	if need == NeedConfig {
		return r.resolveConfig(ctx, repo, rev, cands)
	}
	if r.Offline {
		return nil, r.offlineError(repo, rev, need, cands)
	}
	return r.download(ctx, repo, rev, need)
}

// candidates are the local snapshots of repo at rev, in search order.
func (r *Resolver) candidates(repo, rev string) []*Model {
	var out []*Model
	add := func(root string, src Source) {
		if root == "" {
			return
		}
		if dir, commit := (cacheRepo{root: root, repo: repo}).snapshotFor(rev); dir != "" {
			out = append(out, &Model{Dir: dir, Repo: repo, Revision: rev, Commit: commit, Source: src})
		}
	}
	add(r.HFCache, SourceHFCache)
	if r.MachRoot != "" {
		add(filepath.Join(r.MachRoot, "hub"), SourceMachCache)
		if rev == DefaultRevision {
			d := filepath.Join(r.MachRoot, filepath.FromSlash(repo))
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				out = append(out, &Model{Dir: d, Repo: repo, Revision: rev, Source: SourceMachCache})
			}
		}
	}
	for _, m := range out {
		m.HasLayout = exists(filepath.Join(m.Dir, filepath.FromSlash(LayoutFile)), -1)
	}
	return out
}

// searched names the cache directories for messages.
func (r *Resolver) searched() string {
	var s []string
	if r.HFCache != "" {
		s = append(s, r.HFCache)
	}
	if r.MachRoot != "" {
		s = append(s, r.MachRoot)
	}
	if len(s) == 0 {
		return "no cache directory is known: set HF_HOME or MACH_CACHE_DIR"
	}
	return strings.Join(s, ", ")
}

// resolveConfig serves NeedConfig when no complete snapshot is cached: a
// cached config offline, else a config-only fetch into the engine cache.
func (r *Resolver) resolveConfig(ctx context.Context, repo, rev string, cands []*Model) (*Model, error) {
	if r.Offline {
		for _, c := range cands {
			if exists(filepath.Join(c.Dir, ConfigFile), -1) {
				c.ConfigOnly = true
				return c, nil
			}
		}
		return nil, r.offlineError(repo, rev, NeedConfig, cands)
	}
	if r.MachRoot == "" {
		return nil, fault.Mark(fmt.Errorf("no engine cache directory for %s's config: pass --cache-dir or set %s", repo, EnvCacheDir), fault.ErrUsage)
	}
	if r.Progress != nil {
		fmt.Fprintf(r.Progress, "fetching config.json of %s@%s from %s …\n", repo, rev, r.Client.Endpoint)
	}
	s, err := r.Client.FetchConfig(ctx, repo, rev)
	if err != nil {
		return nil, err
	}
	src := SourceConfigFetch
	if s.FromCache {
		src = SourceMachCache
	}
	return &Model{Dir: s.Dir, Repo: repo, Revision: rev, Commit: s.Commit, Source: src, ConfigOnly: true, HasLayout: s.HasLayout, Warnings: s.Warnings}, nil
}

// offlineError says what is missing and why nothing was fetched.
func (r *Resolver) offlineError(repo, rev string, need Need, cands []*Model) error {
	if len(cands) == 0 {
		return fault.Mark(fmt.Errorf("%s@%s is not in the model caches (%s) and the network is off (%s); missing: every file (%s); run without %s to download them",
			repo, rev, r.searched(), r.OfflineWhy, needFiles(need), r.OfflineWhy), fault.ErrIO)
	}
	c := cands[0]
	return fault.Mark(fmt.Errorf("%s@%s is only partly cached in %s and the network is off (%s); missing: %s; run without %s to download them",
		repo, rev, c.Dir, r.OfflineWhy, strings.Join(Missing(c.Dir, need), ", "), r.OfflineWhy), fault.ErrIO)
}

// download lists the repo at rev and fetches the files need asks for into
// the hub cache.
func (r *Resolver) download(ctx context.Context, repo, rev string, need Need) (*Model, error) {
	root := r.HFCache
	src := SourceDownload
	if root == "" {
		if r.MachRoot == "" {
			return nil, fault.Mark(fmt.Errorf("nowhere to download %s: no home directory; set HF_HOME (or %s, or pass --cache-dir)", repo, EnvCacheDir), fault.ErrUsage)
		}
		root = filepath.Join(r.MachRoot, "hub")
	}
	if r.Progress != nil {
		fmt.Fprintf(r.Progress, "listing %s@%s on %s …\n", repo, rev, r.Client.Endpoint)
	}
	l, err := r.Client.List(ctx, repo, rev)
	if err != nil {
		return nil, err
	}
	if _, ok := l.File(ConfigFile); !ok {
		return nil, fault.Mark(fmt.Errorf("%s@%s has no config.json: not a checkpoint mach can load", repo, rev), fault.ErrIO)
	}
	d := &downloader{
		client:  r.Client,
		hc:      r.Client.downloadClient(),
		cache:   cacheRepo{root: root, repo: repo},
		commit:  l.Commit,
		retries: max(0, r.Retries),
		wait:    r.RetryWait,
		stall:   r.Stall,
	}
	if d.wait <= 0 {
		d.wait = defaultRetryWait
	}
	if d.stall <= 0 {
		d.stall = DefaultStall
	}

	// The index decides which shards are wanted, so it comes first.
	var shards map[string]bool
	if idxFile, ok := l.File(safetensors.IndexName); ok && need&NeedWeights != 0 {
		if err := d.fetch(ctx, idxFile); err != nil {
			return nil, err
		}
		idx, err := safetensors.ReadIndex(d.snapshot())
		if err != nil {
			return nil, err
		}
		shards = map[string]bool{}
		for _, s := range shardList(idx) {
			if _, ok := l.File(s); !ok {
				return nil, fault.Mark(fmt.Errorf("%s@%s: %s names shard %s, which the repo does not have", repo, l.Commit, safetensors.IndexName, s), fault.ErrIO)
			}
			shards[s] = true
		}
	}
	var files []RemoteFile
	var total int64
	weights := false
	for _, f := range l.Files {
		if f.Path == safetensors.IndexName || !Wanted(f.Path, need, shards) {
			continue
		}
		files = append(files, f)
		total += max(0, f.Size)
		if strings.HasSuffix(f.Path, ".safetensors") {
			weights = true
		}
	}
	if need&NeedWeights != 0 && !weights {
		return nil, fault.Mark(fmt.Errorf("%s@%s has no safetensors weights mach can load (model*.safetensors or %s); its files: %s",
			repo, l.Commit, safetensors.IndexName, summarize(l)), fault.ErrIO)
	}
	// Largest first, so the long transfers start early and overlap.
	slices.SortStableFunc(files, func(a, b RemoteFile) int { return int(min(1, max(-1, b.Size-a.Size))) })

	label := fmt.Sprintf("%s@%.7s", repo, l.Commit)
	d.prog = newProgress(r.Progress, nil, label, len(files), total)
	stop, drawn := make(chan struct{}), make(chan struct{})
	interval := r.ProgressInterval
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	go d.prog.run(interval, stop, drawn)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, r.Workers))
	for _, f := range files {
		g.Go(func() error { return d.fetch(gctx, f) })
	}
	err = g.Wait()
	close(stop)
	<-drawn
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("download of %s interrupted (%w); run again to continue where it stopped", repo, ctx.Err())
		}
		return nil, err
	}
	if err := d.cache.writeRef(rev, l.Commit); err != nil {
		return nil, err
	}
	dir := d.snapshot()
	if miss := Missing(dir, need); len(miss) > 0 && !onlyTokenizer(miss) {
		return nil, fault.Mark(fmt.Errorf("%s@%s: downloaded what the repo lists, but %s still lacks %s", repo, l.Commit, dir, strings.Join(miss, ", ")), fault.ErrIO)
	}
	return &Model{
		Dir: dir, Repo: repo, Revision: rev, Commit: l.Commit, Source: src,
		HasLayout:  exists(filepath.Join(dir, filepath.FromSlash(LayoutFile)), -1),
		Downloaded: d.fetched, DownloadedBytes: d.bytes,
	}, nil
}

// needFiles describes what need asks for, for messages.
func needFiles(need Need) string {
	s := []string{ConfigFile}
	if need&NeedTokenizer != 0 {
		s = append(s, "tokenizer.json")
	}
	if need&NeedWeights != 0 {
		s = append(s, "the safetensors weights")
	}
	if need&NeedSidecar != 0 {
		s = append(s, "expert_sidecar/")
	}
	return strings.Join(s, ", ")
}

// onlyTokenizer: the repo simply has no tokenizer.json; the prompter says
// so better than a download error.
func onlyTokenizer(miss []string) bool { return len(miss) == 1 && miss[0] == "tokenizer.json" }

// summarize lists up to 8 of a listing's files for a message.
func summarize(l *Listing) string {
	var names []string
	for i, f := range l.Files {
		if i == 8 {
			names = append(names, fmt.Sprintf("… (%d in all)", len(l.Files)))
			break
		}
		names = append(names, f.Path)
	}
	return strings.Join(names, ", ")
}
