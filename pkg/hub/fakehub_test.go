package hub_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maniac-ai/mach/pkg/hub"
)

// A fake Hugging Face hub: the model-info listing with blob metadata, the
// resolve endpoint with ETag/X-Linked-Etag/X-Repo-Commit headers, a CDN
// that LFS files redirect to, Range requests, gated repos, connections
// dropped mid-file, corrupted bodies and stalls.

const hubCommit = "1111111111222222222233333333334444444444"

type fakeFile struct {
	body []byte
	lfs  bool
}

func (f fakeFile) sha256() string {
	s := sha256.Sum256(f.body)
	return hex.EncodeToString(s[:])
}

func (f fakeFile) gitID() string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(f.body))
	h.Write(f.body)
	return hex.EncodeToString(h.Sum(nil))
}

func (f fakeFile) etag() string {
	if f.lfs {
		return f.sha256()
	}
	return f.gitID()
}

type hfHub struct {
	t    *testing.T
	srv  *httptest.Server
	cdn  *httptest.Server // another host, as the real CDN is
	repo string           // org/name

	mu       sync.Mutex
	files    map[string]fakeFile
	requests []string // "METHOD path[ range]"
	// dropAfter: the next GET of the path sends the full Content-Length
	// but only this many bytes, then drops the connection.
	dropAfter map[string]int
	// stallAfter: like dropAfter but the connection stays open, silent.
	stallAfter map[string]int
	// corrupt: the path's body has one byte flipped (same length).
	corrupt map[string]bool
	// status answers every request for the path (or "listing") with it.
	status    map[string]int
	errorCode string
	// noBlobs: the listing has names only, as a mirror might.
	noBlobs bool
	// noRange: Range headers are ignored (200 with the whole body).
	noRange bool
	served  int64 // body bytes sent
	// cdnAuth counts requests that reached the CDN with a token.
	cdnAuth int
}

func newHFHub(t *testing.T, repo string, files map[string]fakeFile) *hfHub {
	f := &hfHub{t: t, repo: repo, files: files, dropAfter: map[string]int{}, stallAfter: map[string]int{},
		corrupt: map[string]bool{}, status: map[string]int{}}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	f.cdn = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entry := "CDN " + r.Method + " " + r.URL.Path
		if rg := r.Header.Get("Range"); rg != "" {
			entry += " " + rg
		}
		f.mu.Lock()
		f.requests = append(f.requests, entry)
		if r.Header.Get("Authorization") != "" {
			f.cdnAuth++
		}
		f.mu.Unlock()
		f.serveCDN(w, r, strings.TrimPrefix(r.URL.Path, "/cdn/"))
	}))
	t.Cleanup(f.cdn.Close)
	return f
}

func (f *hfHub) client() *hub.Client {
	return &hub.Client{Endpoint: f.srv.URL, Token: "hf_test", CacheRoot: f.t.TempDir()}
}

func (f *hfHub) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

func (f *hfHub) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = nil
	f.served = 0
}

func (f *hfHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	entry := r.Method + " " + p
	if rg := r.Header.Get("Range"); rg != "" {
		entry += " " + rg
	}
	f.mu.Lock()
	f.requests = append(f.requests, entry)
	f.mu.Unlock()

	listing := "/api/models/" + f.repo + "/revision/"
	resolve := "/" + f.repo + "/resolve/"
	switch {
	case strings.HasPrefix(p, listing):
		f.serveListing(w, strings.TrimPrefix(p, listing))
	case strings.HasPrefix(p, resolve):
		rev, file, _ := strings.Cut(strings.TrimPrefix(p, resolve), "/")
		f.serveResolve(w, r, rev, file)
	default:
		w.Header().Set("X-Error-Code", "RepoNotFound")
		http.NotFound(w, r)
	}
}

func (f *hfHub) fail(w http.ResponseWriter, key string) bool {
	f.mu.Lock()
	s, ok := f.status[key]
	f.mu.Unlock()
	if !ok {
		return false
	}
	if f.errorCode != "" {
		w.Header().Set("X-Error-Code", f.errorCode)
		w.Header().Set("X-Error-Message", "Access to model "+f.repo+" is restricted.")
	}
	w.WriteHeader(s)
	return true
}

func (f *hfHub) serveListing(w http.ResponseWriter, rev string) {
	if f.fail(w, "listing") {
		return
	}
	if rev != "main" && rev != hubCommit {
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	type lfs struct {
		SHA256      string `json:"sha256"`
		Size        int    `json:"size"`
		PointerSize int    `json:"pointerSize"`
	}
	type sib struct {
		RFilename string `json:"rfilename"`
		BlobID    string `json:"blobId,omitempty"`
		Size      *int   `json:"size,omitempty"`
		LFS       *lfs   `json:"lfs,omitempty"`
	}
	names := make([]string, 0, len(f.files))
	for n := range f.files {
		names = append(names, n)
	}
	sort.Strings(names)
	var sibs []sib
	for _, n := range names {
		ff := f.files[n]
		s := sib{RFilename: n}
		if !f.noBlobs {
			size := len(ff.body)
			s.Size = &size
			s.BlobID = ff.gitID() // for LFS files the pointer's id; mach must use lfs.sha256
			if ff.lfs {
				s.LFS = &lfs{SHA256: ff.sha256(), Size: size, PointerSize: 134}
			}
		}
		sibs = append(sibs, s)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"_id": "x", "id": f.repo, "sha": hubCommit, "private": false, "gated": false,
		"tags": []string{"safetensors"}, "siblings": sibs,
	})
}

func (f *hfHub) serveResolve(w http.ResponseWriter, r *http.Request, rev, file string) {
	if f.fail(w, file) {
		return
	}
	ff, ok := f.files[file]
	if !ok || (rev != "main" && rev != hubCommit) {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.NotFound(w, r)
		return
	}
	w.Header().Set(hub.HeaderRepoCommit, hubCommit)
	if ff.lfs {
		w.Header().Set(hub.HeaderLinkedETag, `"`+ff.sha256()+`"`)
		w.Header().Set(hub.HeaderLinkedSize, strconv.Itoa(len(ff.body)))
		// "localhost" rather than 127.0.0.1: another host name, so
		// net/http must not forward the token.
		w.Header().Set("Location", "http://localhost:"+strconv.Itoa(f.cdn.Listener.Addr().(*net.TCPAddr).Port)+"/cdn/"+ff.sha256())
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+ff.gitID()+`"`)
	f.serveBody(w, r, file, ff)
}

func (f *hfHub) serveCDN(w http.ResponseWriter, r *http.Request, sha string) {
	for name, ff := range f.files {
		if ff.lfs && ff.sha256() == sha {
			w.Header().Set("ETag", `"cdn-`+sha[:8]+`"`)
			f.serveBody(w, r, name, ff)
			return
		}
	}
	http.NotFound(w, r)
}

func (f *hfHub) serveBody(w http.ResponseWriter, r *http.Request, name string, ff fakeFile) {
	body := ff.body
	f.mu.Lock()
	if f.corrupt[name] {
		body = append([]byte(nil), body...)
		body[len(body)/2] ^= 0xff
	}
	drop, dropping := f.dropAfter[name]
	delete(f.dropAfter, name)
	stall, stalling := f.stallAfter[name]
	delete(f.stallAfter, name)
	noRange := f.noRange
	f.mu.Unlock()

	start := 0
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && !noRange {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		if err != nil || n >= len(body) {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start, status = n, http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(body)-1, len(body)))
	}
	rest := body[start:]
	w.Header().Set("Content-Length", strconv.Itoa(len(rest)))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	send := func(b []byte) {
		_, _ = w.Write(b)
		w.(http.Flusher).Flush()
		f.mu.Lock()
		f.served += int64(len(b))
		f.mu.Unlock()
	}
	switch {
	case dropping:
		send(rest[:drop])
		panic(http.ErrAbortHandler) // the connection drops mid-file
	case stalling:
		send(rest[:stall])
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return
	}
	send(rest)
}
