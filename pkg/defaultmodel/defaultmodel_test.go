package defaultmodel_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/defaultmodel"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/stretchr/testify/require"
)

// tree makes the given directories under root, each a checkpoint (with
// config.json) unless its name ends in "!" (then it is an empty directory),
// and the given files.
func tree(t *testing.T, root string, ckpts []string, files map[string]string) {
	t.Helper()
	for _, d := range ckpts {
		empty := false
		if n := len(d); n > 0 && d[n-1] == '!' {
			d, empty = d[:n-1], true
		}
		p := filepath.Join(root, filepath.FromSlash(d))
		require.NoError(t, os.MkdirAll(p, 0o755))
		if !empty {
			require.NoError(t, os.WriteFile(filepath.Join(p, "config.json"), []byte(`{"model_type":"qwen3_moe"}`), 0o644))
		}
	}
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
}

const machMod = "module github.com/maniac-ai/mach\n\ngo 1.26.0\n"

func TestFind(t *testing.T) {
	cases := []struct {
		name  string
		ckpts []string
		files map[string]string
		env   string // relative to the root; "" = unset
		exe   string // relative to the root; "" = os.Executable fails
		wd    string // relative to the root; "" = Getwd fails
		// want is the found directory relative to the root, or "" for
		// ErrNotFound; wantErr a substring of another error.
		want    string
		src     defaultmodel.Source
		wantErr string
	}{
		{
			name: "env wins over everything", ckpts: []string{"custom", "prefix/share/mach/models/default"},
			env: "custom", exe: "prefix/bin/mach-generate", want: "custom", src: defaultmodel.FromEnv,
		},
		{
			name: "env pointing nowhere is an error, not a fall-through", ckpts: []string{"prefix/share/mach/models/default"},
			env: "missing", exe: "prefix/bin/mach-generate", wantErr: "MACH_DEFAULT_MODEL",
		},
		{
			name: "env pointing at a directory without config.json", ckpts: []string{"empty!", "prefix/share/mach/models/default"},
			env: "empty", exe: "prefix/bin/mach-generate", wantErr: "no config.json",
		},
		{
			name: "make install layout", ckpts: []string{"prefix/share/mach/models/default"},
			exe: "prefix/bin/mach-generate", want: "prefix/share/mach/models/default", src: defaultmodel.FromInstall,
		},
		{
			name: "release archive unpacked flat", ckpts: []string{"mach_1.0_linux_amd64/share/mach/models/default"},
			exe: "mach_1.0_linux_amd64/mach-generate", want: "mach_1.0_linux_amd64/share/mach/models/default", src: defaultmodel.FromArchive,
		},
		{
			name: "checkout bin/", ckpts: []string{"repo/models/default"}, files: map[string]string{"repo/go.mod": machMod},
			exe: "repo/bin/mach-generate", want: "repo/models/default", src: defaultmodel.FromCheckout,
		},
		{
			name: "install beats a checkout next to it", ckpts: []string{"p/share/mach/models/default", "p/models/default"},
			exe: "p/bin/mach-generate", want: "p/share/mach/models/default", src: defaultmodel.FromInstall,
		},
		{
			name: "go run from inside a checkout", ckpts: []string{"repo/models/default", "repo/cmd/mach-generate!"},
			files: map[string]string{"repo/go.mod": machMod},
			exe:   "tmp/go-build123/exe/mach-generate", wd: "repo/cmd/mach-generate",
			want: "repo/models/default", src: defaultmodel.FromCheckout,
		},
		{
			name: "another module's checkout is not ours", ckpts: []string{"other/models/default", "other/sub!"},
			files: map[string]string{"other/go.mod": "module example.com/other\n"},
			exe:   "tmp/x/mach-generate", wd: "other/sub",
		},
		{
			name: "nearest go.mod decides", ckpts: []string{"repo/models/default", "repo/vendor/x!"},
			files: map[string]string{"repo/go.mod": machMod, "repo/vendor/x/go.mod": "module example.com/x\n"},
			exe:   "tmp/x/mach-generate", wd: "repo/vendor/x",
		},
		{
			name: "a directory without config.json does not count", ckpts: []string{"p/share/mach/models/default!"},
			exe: "p/bin/mach-generate",
		},
		{name: "nothing anywhere", exe: "p/bin/mach-generate", wd: "p"},
		{name: "no executable, no working directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			tree(t, root, c.ckpts, c.files)
			abs := func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
			o := defaultmodel.Options{
				Getenv: func(k string) string {
					if k == defaultmodel.EnvVar && c.env != "" {
						return abs(c.env)
					}
					return ""
				},
				Executable: func() (string, error) {
					if c.exe == "" {
						return "", errors.New("no executable")
					}
					return abs(c.exe), nil
				},
				Getwd: func() (string, error) {
					if c.wd == "" {
						return "", errors.New("no working directory")
					}
					return abs(c.wd), nil
				},
			}
			m, err := defaultmodel.Find(o)
			switch {
			case c.wantErr != "":
				require.ErrorIs(t, err, fault.ErrIO)
				require.NotErrorIs(t, err, defaultmodel.ErrNotFound)
				require.ErrorContains(t, err, c.wantErr)
			case c.want == "":
				require.ErrorIs(t, err, defaultmodel.ErrNotFound)
				require.ErrorIs(t, err, fault.ErrIO)
				require.ErrorContains(t, err, defaultmodel.EnvVar, "the error says how to fix it")
			default:
				require.NoError(t, err)
				require.Equal(t, abs(c.want), m.Dir)
				require.Equal(t, c.src, m.Source)
			}
		})
	}
}

// TestFindThroughSymlink: a binary linked from elsewhere (Homebrew links
// the cask's binaries into its bin/) finds the model beside its real file.
func TestFindThroughSymlink(t *testing.T) {
	root := t.TempDir()
	tree(t, root, []string{"Caskroom/mach/1.0/share/mach/models/default", "brew/bin!"}, map[string]string{"Caskroom/mach/1.0/mach-generate": "#!"})
	link := filepath.Join(root, "brew", "bin", "mach-generate")
	require.NoError(t, os.Symlink(filepath.Join(root, "Caskroom", "mach", "1.0", "mach-generate"), link))
	m, err := defaultmodel.Find(defaultmodel.Options{
		Getenv:     func(string) string { return "" },
		Executable: func() (string, error) { return link, nil },
		Getwd:      func() (string, error) { return root, nil },
	})
	require.NoError(t, err)
	real, err := filepath.EvalSymlinks(filepath.Join(root, "Caskroom", "mach", "1.0", "share", "mach", "models", "default"))
	require.NoError(t, err)
	require.Equal(t, real, m.Dir)
	require.Equal(t, defaultmodel.FromArchive, m.Source)
}

// TestFindThisCheckout: from this package's directory (go test), the
// repository's own models/default is found, and it is the model the
// parity tests check.
func TestFindThisCheckout(t *testing.T) {
	m, err := defaultmodel.Find(defaultmodel.Options{Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	want, err := filepath.Abs(filepath.Join("..", "..", "models", "default"))
	require.NoError(t, err)
	require.Equal(t, want, m.Dir)
	require.Equal(t, defaultmodel.FromCheckout, m.Source)
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "MODEL_CARD.md", "DATA_LICENSE.txt"} {
		require.FileExists(t, filepath.Join(m.Dir, f))
	}
}
