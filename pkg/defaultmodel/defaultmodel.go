// Package defaultmodel finds mach's default model: the small qwen3_moe
// checkpoint (MLX affine 8-bit) trained on the Python documentation that
// ships with mach (models/default in the repository), which mach-generate
// and mach-serve use when no model is given.
//
// The model is a directory of files next to the binaries, not embedded in
// them: go:embed would add its 17 MB to every computing binary and give up
// the zero-copy mmap of the weights (embedded bytes are not a file the
// safetensors loader can map), and a directory stays a normal checkpoint
// (mlx-lm's layout) that mach check and the tests read as is.
//
// Find looks, in order, at
//
//  1. $MACH_DEFAULT_MODEL (when set it must hold the model: a mistake there
//     is an error, never a silent fall-through to another copy);
//  2. <exe dir>/../share/mach/models/default — what `make install` installs
//     (PREFIX/bin and PREFIX/share/mach);
//  3. <exe dir>/share/mach/models/default — a release archive unpacked as
//     is, which is also where the Homebrew cask keeps it (the cask links the
//     binaries out of the unpacked archive; symbolic links to the executable
//     are resolved first);
//  4. <exe dir>/../models/default — bin/ of a repository checkout (make
//     build);
//  5. models/default of the checkout holding the working directory (a
//     directory whose go.mod declares mach's module), for go run and go
//     test, whose executables live in temporary directories.
//
// A candidate counts when it holds config.json.
package defaultmodel

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/maniac-ai/mach/pkg/fault"
)

// EnvVar names the environment variable that overrides the location.
const EnvVar = "MACH_DEFAULT_MODEL"

// InstallDir is where installs put the model, relative to the installation
// prefix (the parent of bin/) or to an unpacked release archive.
const InstallDir = "share/mach/models/default"

// RepoDir is the model's directory in the repository.
const RepoDir = "models/default"

// module is the repository's module path, which identifies a checkout.
const module = "github.com/maniac-ai/mach"

// Source says which rule found the model.
type Source string

// The sources, in the order Find tries them.
const (
	FromEnv      Source = "env"      // $MACH_DEFAULT_MODEL
	FromInstall  Source = "install"  // <exe dir>/../share/mach/models/default
	FromArchive  Source = "archive"  // <exe dir>/share/mach/models/default
	FromCheckout Source = "checkout" // <exe dir>/../models/default or the working directory's checkout
)

// Options are what Find reads from the process; the zero value uses the
// real environment, executable and working directory.
type Options struct {
	Getenv     func(string) string
	Executable func() (string, error)
	Getwd      func() (string, error)
}

// Model is a found default model.
type Model struct {
	// Dir is the checkpoint directory.
	Dir    string
	Source Source
}

// ErrNotFound is returned (wrapped, classified fault.ErrIO) when no
// candidate holds the model.
var ErrNotFound = errors.New("the default model is not installed")

// Find returns the default model's directory.
func Find(o Options) (Model, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Executable == nil {
		o.Executable = os.Executable
	}
	if o.Getwd == nil {
		o.Getwd = os.Getwd
	}
	if env := o.Getenv(EnvVar); env != "" {
		if err := holds(env); err != nil {
			return Model{}, fault.Mark(fmt.Errorf("$%s=%s: %w; point it at a checkpoint directory (holding config.json) or unset it", EnvVar, env, err), fault.ErrIO)
		}
		return Model{Dir: env, Source: FromEnv}, nil
	}
	var tried []string
	try := func(dir string, src Source) (Model, bool) {
		tried = append(tried, dir)
		if holds(dir) == nil {
			return Model{Dir: dir, Source: src}, true
		}
		return Model{}, false
	}
	if exe, err := o.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		bin := filepath.Dir(exe)
		for _, c := range []struct {
			dir string
			src Source
		}{
			{filepath.Join(bin, "..", InstallDir), FromInstall},
			{filepath.Join(bin, InstallDir), FromArchive},
			{filepath.Join(bin, "..", RepoDir), FromCheckout},
		} {
			if m, ok := try(filepath.Clean(c.dir), c.src); ok {
				return m, nil
			}
		}
	}
	if wd, err := o.Getwd(); err == nil {
		if root, ok := checkoutRoot(wd); ok {
			if m, ok := try(filepath.Join(root, RepoDir), FromCheckout); ok {
				return m, nil
			}
		}
	}
	return Model{}, fault.Mark(fmt.Errorf("%w (looked in %s): give a checkpoint directory, set $%s, or reinstall mach (make install copies it to PREFIX/%s)",
		ErrNotFound, strings.Join(tried, ", "), EnvVar, InstallDir), fault.ErrIO)
}

// holds reports whether dir looks like a checkpoint: a directory with
// config.json.
func holds(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return errors.New("not a directory")
	}
	st, err = os.Stat(filepath.Join(dir, "config.json"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("no config.json in it")
		}
		return err
	}
	if !st.Mode().IsRegular() {
		return errors.New("config.json is not a file")
	}
	return nil
}

// checkoutRoot returns the module root holding dir (the nearest directory
// at or above it with a go.mod, as the go command decides) when that
// module is mach.
func checkoutRoot(dir string) (string, bool) {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		f, err := os.Open(filepath.Join(d, "go.mod"))
		if err == nil {
			ok := declaresMach(f)
			f.Close()
			return d, ok
		}
		if filepath.Dir(d) == d {
			return "", false
		}
	}
}

func declaresMach(gomod *os.File) bool {
	s := bufio.NewScanner(gomod)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`) == module
		}
	}
	return false
}
