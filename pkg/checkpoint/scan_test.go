package checkpoint_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	ct "github.com/maniac-ai/mach/pkg/checkpoint/checkpointtest"
	"github.com/stretchr/testify/require"
)

func TestScan(t *testing.T) {
	root := t.TempDir()
	weights := func(dir string) {
		ct.WriteSafetensors(t, filepath.Join(dir, "model.safetensors"), []ct.Tensor{ct.T("w", "BF16", 10, 10)})
	}
	// A plain child with weights.
	ct.WriteFile(t, root, "plain/config.json", `{"model_type":"qwen3_moe"}`)
	weights(filepath.Join(root, "plain"))
	// An org/name tree.
	ct.WriteFile(t, root, "mlx-community/Qwen3-4bit/config.json", `{"model_type":"qwen3_moe"}`)
	// A Hugging Face cache: refs/main wins over the newer snapshot.
	hubDir := filepath.Join(root, "hub", "models--org--model")
	ct.WriteFile(t, hubDir, "refs/main", "aaaa")
	ct.WriteFile(t, hubDir, "snapshots/aaaa/config.json", `{"model_type":"gpt_oss"}`)
	weights(filepath.Join(hubDir, "snapshots", "aaaa"))
	ct.WriteFile(t, hubDir, "snapshots/bbbb/config.json", `{"model_type":"gpt_oss"}`)
	// A cache entry without refs: the most recent snapshot.
	hub2 := filepath.Join(root, "hub", "models--org--other")
	ct.WriteFile(t, hub2, "snapshots/old/config.json", `{"model_type":"gemma4"}`)
	ct.WriteFile(t, hub2, "snapshots/new/config.json", `{"model_type":"gemma4"}`)
	past := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(hub2, "snapshots/old/config.json"), past, past))
	// A sidecar counts towards the size.
	ct.WriteFile(t, root, "plain/expert_sidecar/layer_00.bin", "12345")
	// Broken config: listed with its error.
	ct.WriteFile(t, root, "broken/config.json", `{`)
	// Hidden and config-less directories are skipped.
	ct.WriteFile(t, root, ".hidden/config.json", `{"model_type":"qwen3_moe"}`)
	ct.WriteFile(t, root, "empty/readme.txt", "x")
	// A second root that is itself a checkpoint, and one that does not exist.
	other := filepath.Join(t.TempDir(), "single")
	ct.WriteFile(t, other, "config.json", `{"model_type":"llama"}`)
	// A symlink to an already-listed checkpoint is listed once.
	require.NoError(t, os.Symlink(filepath.Join(root, "plain"), filepath.Join(root, "plain-link")))

	found, errs := checkpoint.Scan([]string{root, other, filepath.Join(root, "nope"), root})
	require.Empty(t, errs)
	type row struct {
		name, modelType, repo, rev string
		installed, broken          bool
	}
	var got []row
	for _, f := range found {
		got = append(got, row{f.Name, f.ModelType, f.RepoID, f.Revision, f.Installed, f.ConfigErr != nil})
	}
	require.Equal(t, []row{
		{"broken", "", "", "", false, true},
		{"mlx-community/Qwen3-4bit", "qwen3_moe", "", "", false, false},
		{"org/model", "gpt_oss", "org/model", "aaaa", true, false},
		{"org/other", "gemma4", "org/other", "new", false, false},
		{"plain", "qwen3_moe", "", "", true, false},
		{"single", "llama", "", "", false, false},
	}, got)
	for _, f := range found {
		if f.Name == "plain" {
			st, err := os.Stat(filepath.Join(root, "plain", "model.safetensors"))
			require.NoError(t, err)
			require.Equal(t, st.Size()+5, f.SizeBytes)
		}
	}
}

func TestScanHubCacheAsRoot(t *testing.T) {
	root := t.TempDir()
	ct.WriteFile(t, root, "models--a--b/snapshots/main/config.json", `{"model_type":"qwen3_moe"}`)
	ct.WriteFile(t, root, "models--bad/snapshots/main/config.json", `{"model_type":"qwen3_moe"}`)
	found, errs := checkpoint.Scan([]string{root})
	require.Empty(t, errs)
	require.Len(t, found, 1)
	require.Equal(t, "a/b", found[0].Name)
	require.Equal(t, "main", found[0].Revision)
}
