// Package dispatch implements the git-style front end `mach`: `mach NAME
// ARGS…` runs the executable `mach-NAME ARGS…` found next to the running
// `mach` or on PATH, handing it stdin, stdout, stderr, signals and the exit
// status.
package dispatch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/maniac-ai/mach/pkg/fault"
)

// Command is a mach subcommand and the one-line summary `mach help` shows.
type Command struct {
	Name    string
	Summary string
}

// Known lists the commands mach ships, in the order help shows them.
var Known = []Command{
	{"archs", "list the MoE architectures this build can serve"},
	{"models", "list local checkpoints and the remote catalog"},
	{"check", "preflight a checkpoint: support, paths, artifacts, memory"},
	{"generate", "one-shot text generation"},
	{"serve", "OpenAI-compatible HTTP server"},
	{"convert", "bf16 master to a 2-bit IQ2 GGUF-expert checkpoint"},
	{"prune", "slice a checkpoint to a keep-list of experts (engine layout)"},
	{"reap", "REAP expert-saliency analysis and prune plan"},
	{"export-sidecar", "write expert_sidecar/ for direct-pread streaming"},
}

// Finder locates mach-NAME executables: first in Dir (the directory of the
// running mach), then on PATH.
type Finder struct {
	Dir      string
	LookPath func(string) (string, error)
}

// NewFinder returns a Finder for the running executable.
func NewFinder() Finder {
	dir := ""
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dir = filepath.Dir(exe)
	}
	return Finder{Dir: dir, LookPath: exec.LookPath}
}

// ErrUnknownCommand is returned for a name that is not a known command
// and has no mach-NAME executable.
var ErrUnknownCommand = errors.New("not a mach command")

// ErrNotInstalled is returned for a known command whose mach-NAME
// executable is missing.
var ErrNotInstalled = errors.New("mach command not installed")

// Find returns the path of mach-NAME.
func (f Finder) Find(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return "", unknown(fmt.Sprintf("%q is not a mach command; run 'mach help' for the list", name))
	}
	bin := "mach-" + name
	if f.Dir != "" {
		p := filepath.Join(f.Dir, bin)
		if isExecutable(p) {
			return p, nil
		}
	}
	if f.LookPath != nil {
		if p, err := f.LookPath(bin); err == nil {
			return p, nil
		}
	}
	for _, c := range Known {
		if c.Name == name {
			// A command mach knows whose executable is missing: an
			// installation problem, not a typo.
			return "", fault.Mark(fmt.Errorf("%w: %s is not installed: looked next to mach (%s) and on PATH; reinstall mach (make install, or the release archive) or put %s on PATH", ErrNotInstalled, bin, f.Dir, bin), fault.ErrIO)
		}
	}
	msg := fmt.Sprintf("'%s' is not a mach command: no %s next to mach (%s) or on PATH", name, bin, f.Dir)
	if s := suggest(name); s != "" {
		msg += fmt.Sprintf("; did you mean '%s'?", s)
	}
	msg += "; run 'mach help' for the list"
	return "", unknown(msg)
}

func unknown(msg string) error {
	return fault.Mark(fault.Mark(errors.New(msg), ErrUnknownCommand), fault.ErrUsage)
}

// Available returns the commands whose executables can be found, known ones
// first, then any other mach-* executable in Dir or on PATH.
func (f Finder) Available() []Command {
	var out []Command
	seen := map[string]bool{}
	for _, c := range Known {
		if _, err := f.Find(c.Name); err == nil {
			out = append(out, c)
			seen[c.Name] = true
		}
	}
	dirs := []string{f.Dir}
	dirs = append(dirs, filepath.SplitList(os.Getenv("PATH"))...)
	var extra []string
	for _, d := range dirs {
		if d == "" {
			continue
		}
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			n, ok := strings.CutPrefix(e.Name(), "mach-")
			if !ok || n == "" || seen[n] || !isExecutable(filepath.Join(d, e.Name())) {
				continue
			}
			seen[n] = true
			extra = append(extra, n)
		}
	}
	slices.Sort(extra)
	for _, n := range extra {
		out = append(out, Command{Name: n, Summary: "(external command)"})
	}
	return out
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	if err != nil || st.IsDir() {
		return false
	}
	return st.Mode()&fs.ModePerm&0o111 != 0
}

// suggest returns the known command closest to name, if it is close.
func suggest(name string) string {
	best, bestD := "", 3
	for _, c := range Known {
		if d := distance(name, c.Name); d < bestD {
			best, bestD = c.Name, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
