package hub

import (
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Environment variables read the way huggingface_hub reads them, so a
// machine set up for Python tools works for mach unchanged.
const (
	EnvHome        = "HF_HOME"
	EnvHubCache    = "HF_HUB_CACHE"
	EnvHubCacheOld = "HUGGINGFACE_HUB_CACHE"
	EnvTokenOld    = "HUGGING_FACE_HUB_TOKEN"
	EnvTokenPath   = "HF_TOKEN_PATH"
	EnvOffline     = "HF_HUB_OFFLINE"
	envOfflineTF   = "TRANSFORMERS_OFFLINE"
	envXDGCache    = "XDG_CACHE_HOME"
)

// maxTokenFile bounds the token file read.
const maxTokenFile = 4 << 10

// Getenv reads one environment variable; os.Getenv, or a map in tests.
type Getenv func(string) string

func (g Getenv) get(k string) string {
	if g == nil {
		return os.Getenv(k)
	}
	return g(k)
}

// homeDir is $HOME (or %USERPROFILE%) as getenv sees it, so tests with an
// empty environment never see the real home directory.
func (g Getenv) homeDir() string {
	if h := g.get("HOME"); h != "" {
		return h
	}
	return g.get("USERPROFILE")
}

// hfHome is $HF_HOME, else $XDG_CACHE_HOME/huggingface, else
// ~/.cache/huggingface; "" when there is no home directory.
func (g Getenv) hfHome() string {
	if h := g.get(EnvHome); h != "" {
		return h
	}
	if x := g.get(envXDGCache); x != "" {
		return filepath.Join(x, "huggingface")
	}
	if h := g.homeDir(); h != "" {
		return filepath.Join(h, ".cache", "huggingface")
	}
	return ""
}

// HFCacheDir is the Hugging Face hub cache: $HF_HUB_CACHE, else the legacy
// $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub (HF_HOME defaulting to
// $XDG_CACHE_HOME/huggingface, then ~/.cache/huggingface). It is "" when
// none of those can be known (no home directory).
func HFCacheDir(getenv Getenv) string {
	if d := getenv.get(EnvHubCache); d != "" {
		return d
	}
	if d := getenv.get(EnvHubCacheOld); d != "" {
		return d
	}
	if h := getenv.hfHome(); h != "" {
		return filepath.Join(h, "hub")
	}
	return ""
}

// MachCacheDir is the engine cache root: override when set, else
// $MACH_CACHE_DIR, else ~/.cache/mach; "" without a home directory.
func MachCacheDir(getenv Getenv, override string) string {
	if override != "" {
		return override
	}
	if d := getenv.get(EnvCacheDir); d != "" {
		return d
	}
	if h := getenv.homeDir(); h != "" {
		return filepath.Join(h, ".cache", "mach")
	}
	return ""
}

// CacheDirs are the directories that hold models, in search order: the
// Hugging Face hub cache, then the engine cache root. Unknown ones are
// left out.
func CacheDirs(getenv Getenv, override string) []string {
	var out []string
	for _, d := range []string{HFCacheDir(getenv), MachCacheDir(getenv, override)} {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// Token is the bearer token: $HF_TOKEN, else the legacy
// $HUGGING_FACE_HUB_TOKEN, else the file huggingface-cli login writes
// ($HF_TOKEN_PATH, else $HF_HOME/token). "" means anonymous.
func Token(getenv Getenv) string {
	for _, k := range []string{EnvToken, EnvTokenOld} {
		if t := strings.TrimSpace(getenv.get(k)); t != "" {
			return t
		}
	}
	p := getenv.get(EnvTokenPath)
	if p == "" {
		h := getenv.hfHome()
		if h == "" {
			return ""
		}
		p = filepath.Join(h, "token")
	}
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Endpoint is $HF_ENDPOINT without a trailing slash, else DefaultEndpoint.
func Endpoint(getenv Getenv) string {
	if ep := strings.TrimRight(getenv.get(EnvEndpoint), "/"); ep != "" {
		return ep
	}
	return DefaultEndpoint
}

// Offline reports whether $HF_HUB_OFFLINE (or $TRANSFORMERS_OFFLINE) is
// set to 1, ON, YES or TRUE, as huggingface_hub reads it.
func Offline(getenv Getenv) bool {
	v := getenv.get(EnvOffline)
	if v == "" {
		v = getenv.get(envOfflineTF)
	}
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// NewClientEnv returns a client for the endpoint and token getenv gives,
// caching config-only fetches under cacheRoot.
func NewClientEnv(getenv Getenv, cacheRoot string) *Client {
	return &Client{Endpoint: Endpoint(getenv), Token: Token(getenv), CacheRoot: cacheRoot}
}
