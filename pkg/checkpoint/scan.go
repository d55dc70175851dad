package checkpoint

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// Found is a checkpoint directory found by Scan.
type Found struct {
	// Name is org/name for a Hugging Face cache entry, else the path
	// relative to the scanned root (the root's base name when the root
	// itself is a checkpoint).
	Name string
	// Dir is the checkpoint directory.
	Dir string
	// RepoID and Revision are set for Hugging Face cache snapshots
	// (models--org--name/snapshots/<revision>/).
	RepoID   string
	Revision string
	// ModelType is config.json's model_type; ConfigErr says why it could
	// not be read.
	ModelType string
	ConfigErr error
	// Installed: weights (*.safetensors or *.gguf) are present, not just
	// the config a config-only fetch leaves.
	Installed bool
	// SizeBytes counts weight files and the expert sidecar.
	SizeBytes int64
}

// Scan finds checkpoints (directories holding config.json) under each
// root, without reading weights:
//
//   - the root itself, when it holds config.json;
//   - Hugging Face cache repos root/models--org--name and
//     root/hub/models--org--name, at the snapshot refs/main points to (else
//     the most recently modified one);
//   - root/X/config.json and root/X/Y/config.json (e.g. org/name trees).
//
// Hidden directories are skipped and a directory reached twice (through
// two roots or a symlink) is listed once. Roots that do not exist are
// skipped; other problems are returned alongside what was found.
func Scan(roots []string) ([]Found, []error) {
	var out []Found
	var errs []error
	seen := map[string]bool{}
	add := func(f Found) {
		key := f.Dir
		if r, err := filepath.EvalSymlinks(f.Dir); err == nil {
			key = r
		}
		if seen[key] {
			return
		}
		seen[key] = true
		describe(&f)
		out = append(out, f)
	}
	for _, root := range roots {
		st, err := os.Stat(root)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !st.IsDir() {
			continue
		}
		if hasConfig(root) {
			add(Found{Name: filepath.Base(filepath.Clean(root)), Dir: root})
			continue
		}
		scanHubCache(root, add)
		scanHubCache(filepath.Join(root, "hub"), add)
		children, err := subdirs(root)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range children {
			if c == "hub" || strings.HasPrefix(c, "models--") {
				continue
			}
			dir := filepath.Join(root, c)
			if hasConfig(dir) {
				add(Found{Name: c, Dir: dir})
				continue
			}
			grand, _ := subdirs(dir)
			for _, g := range grand {
				if d := filepath.Join(dir, g); hasConfig(d) {
					add(Found{Name: c + "/" + g, Dir: d})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Found) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Dir, b.Dir)
	})
	return out, errs
}

// scanHubCache lists the repos of a Hugging Face hub cache directory.
func scanHubCache(dir string, add func(Found)) {
	children, err := subdirs(dir)
	if err != nil {
		return
	}
	for _, c := range children {
		rest, ok := strings.CutPrefix(c, "models--")
		if !ok {
			continue
		}
		org, name, ok := strings.Cut(rest, "--")
		if !ok || org == "" || name == "" {
			continue
		}
		repoDir := filepath.Join(dir, c)
		rev := pickSnapshot(repoDir)
		if rev == "" {
			continue
		}
		add(Found{
			Name:     org + "/" + name,
			Dir:      filepath.Join(repoDir, "snapshots", rev),
			RepoID:   org + "/" + name,
			Revision: rev,
		})
	}
}

// pickSnapshot returns the snapshot refs/main names, else the most recently
// modified snapshot holding config.json.
func pickSnapshot(repoDir string) string {
	snaps := filepath.Join(repoDir, "snapshots")
	if b, err := os.ReadFile(filepath.Join(repoDir, "refs", "main")); err == nil {
		ref := strings.TrimSpace(string(b))
		if ref != "" && !strings.ContainsAny(ref, `/\`) && hasConfig(filepath.Join(snaps, ref)) {
			return ref
		}
	}
	names, err := subdirs(snaps)
	if err != nil {
		return ""
	}
	best, bestTime := "", int64(-1)
	for _, n := range names {
		d := filepath.Join(snaps, n)
		st, err := os.Stat(filepath.Join(d, modelconfig.FileName))
		if err != nil {
			continue
		}
		if t := st.ModTime().UnixNano(); t > bestTime {
			best, bestTime = n, t
		}
	}
	return best
}

func hasConfig(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, modelconfig.FileName))
	return err == nil && st.Mode().IsRegular()
}

// subdirs lists the non-hidden directories (or symlinks to directories) in
// dir, sorted.
func subdirs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if e.IsDir() {
			out = append(out, e.Name())
			continue
		}
		if e.Type()&fs.ModeSymlink != 0 {
			if st, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && st.IsDir() {
				out = append(out, e.Name())
			}
		}
	}
	return out, nil
}

// describe reads the model_type and sizes the weights of a found
// checkpoint.
func describe(f *Found) {
	cfg, err := modelconfig.Load(f.Dir)
	if err != nil {
		f.ConfigErr = err
	} else {
		f.ModelType = cfg.ModelType
	}
	for _, pattern := range []string{"*.safetensors", "*.gguf"} {
		m, _ := filepath.Glob(filepath.Join(f.Dir, pattern))
		for _, p := range m {
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				f.SizeBytes += st.Size()
				f.Installed = true
			}
		}
	}
	m, _ := filepath.Glob(filepath.Join(f.Dir, sidecar.DirName, "*.bin"))
	for _, p := range m {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			f.SizeBytes += st.Size()
		}
	}
}
