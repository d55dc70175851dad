// Package hubtest serves local files as Hugging Face Hub repos over
// httptest, for tests of commands that resolve repo ids: the model-info
// listing with blob metadata (GET /api/models/{repo}/revision/{rev}
// ?blobs=true) and the resolve endpoint with Range support and the hub's
// headers (X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size). Safetensors
// and .bin files are served as LFS files, everything else as git files.
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Commit is the commit every revision of every repo resolves to.
const Commit = "c0ffee0000c0ffee0000c0ffee0000c0ffee0000"

// Server is a fake hub.
type Server struct {
	URL string

	mu       sync.Mutex
	repos    map[string]map[string]file
	requests []string
}

// file is a served file with its ids, computed once.
type file struct {
	body       []byte
	gitID, sha string
}

// New starts a server that t closes.
func New(t testing.TB) *Server {
	s := &Server{repos: map[string]map[string]file{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// AddFile adds a file to repo.
func (s *Server) AddFile(repo, path string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repos[repo] == nil {
		s.repos[repo] = map[string]file{}
	}
	s.repos[repo][path] = file{body: body, gitID: gitID(body), sha: sha(body)}
}

// AddDir adds every regular file under dir (following symlinks) to repo.
func (s *Server) AddDir(t testing.TB, repo, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		s.AddFile(repo, filepath.ToSlash(rel), b)
		return nil
	})
	if err != nil {
		t.Fatalf("hubtest: %v", err)
	}
}

// Requests returns "METHOD path" for every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Reset forgets the requests.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

func lfs(path string) bool {
	return strings.HasSuffix(path, ".safetensors") || strings.HasSuffix(path, ".bin")
}

func gitID(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	p := r.URL.Path
	if rest, ok := strings.CutPrefix(p, "/api/models/"); ok {
		repo, rev, ok := strings.Cut(rest, "/revision/")
		files := s.files(repo)
		if !ok || files == nil {
			w.Header().Set("X-Error-Code", "RepoNotFound")
			http.NotFound(w, r)
			return
		}
		_ = rev // every revision is Commit
		s.listing(w, repo, files)
		return
	}
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 5) // org, name, "resolve", rev, path
	if len(parts) < 5 || parts[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	f, ok := s.files(parts[0] + "/" + parts[1])[parts[4]]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.NotFound(w, r)
		return
	}
	w.Header().Set("X-Repo-Commit", Commit)
	if lfs(parts[4]) {
		w.Header().Set("X-Linked-Etag", `"`+f.sha+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.body)))
	} else {
		w.Header().Set("ETag", `"`+f.gitID+`"`)
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

func (s *Server) files(repo string) map[string]file {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repos[repo]
}

func (s *Server) listing(w http.ResponseWriter, repo string, files map[string]file) {
	type lfsInfo struct {
		SHA256      string `json:"sha256"`
		Size        int    `json:"size"`
		PointerSize int    `json:"pointerSize"`
	}
	type sibling struct {
		RFilename string   `json:"rfilename"`
		BlobID    string   `json:"blobId"`
		Size      int      `json:"size"`
		LFS       *lfsInfo `json:"lfs,omitempty"`
	}
	var sibs []sibling
	for _, p := range slices.Sorted(maps.Keys(files)) {
		f := files[p]
		sb := sibling{RFilename: p, BlobID: f.gitID, Size: len(f.body)}
		if lfs(p) {
			sb.LFS = &lfsInfo{SHA256: f.sha, Size: len(f.body), PointerSize: 134}
		}
		sibs = append(sibs, sb)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": repo, "sha": Commit, "siblings": sibs})
}
