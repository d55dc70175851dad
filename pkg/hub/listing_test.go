package hub_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/stretchr/testify/require"
)

const (
	sha40 = "0123456789abcdef0123456789abcdef01234567"
	sha64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func TestParseListing(t *testing.T) {
	l, err := hub.ParseListing([]byte(`{"_id":"x","id":"org/m","sha":"` + sha40 + `","cardData":{"license":"mit"},"siblings":[
		{"rfilename":"config.json","blobId":"` + sha40 + `","size":12},
		{"rfilename":"model.safetensors","blobId":"` + sha40 + `","size":134,"lfs":{"sha256":"` + sha64 + `","size":5000000000,"pointerSize":134}},
		{"rfilename":"expert_sidecar/layer_00.bin"}]}`))
	require.NoError(t, err)
	require.Equal(t, sha40, l.Commit)
	require.Equal(t, []hub.RemoteFile{
		{Path: "config.json", Size: 12, BlobID: sha40},
		{Path: "model.safetensors", Size: 5_000_000_000, BlobID: sha40, SHA256: sha64},
		{Path: "expert_sidecar/layer_00.bin", Size: -1},
	}, l.Files)
	require.Equal(t, sha64, l.Files[1].ETag(), "an LFS file's ETag is its sha256, not the pointer's git id")
	require.Equal(t, sha40, l.Files[0].ETag())
	f, ok := l.File("model.safetensors")
	require.True(t, ok)
	require.EqualValues(t, 5_000_000_000, f.Size)

	sib := func(s string) string { return `{"sha":"` + sha40 + `","siblings":[` + s + `]}` }
	bad := map[string]string{
		"not json":         `{`,
		"no sha":           `{"siblings":[]}`,
		"short sha":        `{"sha":"abc","siblings":[]}`,
		"upper-case sha":   `{"sha":"` + strings.ToUpper(sha40) + `","siblings":[]}`,
		"no siblings":      `{"sha":"` + sha40 + `"}`,
		"no rfilename":     sib(`{"size":1}`),
		"empty path":       sib(`{"rfilename":""}`),
		"dot-dot":          sib(`{"rfilename":"../../etc/passwd"}`),
		"inner dot-dot":    sib(`{"rfilename":"a/../../b"}`),
		"dot":              sib(`{"rfilename":"./a"}`),
		"absolute":         sib(`{"rfilename":"/etc/passwd"}`),
		"backslash":        sib(`{"rfilename":"a\\..\\b"}`),
		"drive":            sib(`{"rfilename":"C:x"}`),
		"double slash":     sib(`{"rfilename":"a//b"}`),
		"trailing slash":   sib(`{"rfilename":"a/"}`),
		"git dir":          sib(`{"rfilename":".git/config"}`),
		"control":          sib(`{"rfilename":"a\nb"}`),
		"long":             sib(`{"rfilename":"` + strings.Repeat("a", 1025) + `"}`),
		"duplicate":        sib(`{"rfilename":"a"},{"rfilename":"a"}`),
		"negative size":    sib(`{"rfilename":"a","size":-1}`),
		"bad blob id":      sib(`{"rfilename":"a","blobId":"../x"}`),
		"bad lfs sha":      sib(`{"rfilename":"a","lfs":{"sha256":"xyz","size":1}}`),
		"missing lfs sha":  sib(`{"rfilename":"a","lfs":{"size":1}}`),
		"negative lfs":     sib(`{"rfilename":"a","lfs":{"sha256":"` + sha64 + `","size":-5}}`),
		"wrong type":       sib(`{"rfilename":7}`),
		"siblings object":  `{"sha":"` + sha40 + `","siblings":{}}`,
		"size not integer": sib(`{"rfilename":"a","size":1.5}`),
	}
	for name, in := range bad {
		_, err := hub.ParseListing([]byte(in))
		require.ErrorIs(t, err, hub.ErrListing, name)
		require.ErrorIs(t, err, fault.ErrNetwork, name)
	}
	_, err = hub.ParseListing([]byte(sib(`{"rfilename":"a"}` + strings.Repeat(`,{"rfilename":"a"}`, 1))))
	require.ErrorContains(t, err, "listed twice")
}

func TestParseListingBounds(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"sha":"` + sha40 + `","siblings":[`)
	for i := range 200_001 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"rfilename":"f%d"}`, i)
	}
	b.WriteString("]}")
	_, err := hub.ParseListing([]byte(b.String()))
	require.ErrorContains(t, err, "more than 200000")
	_, err = hub.ParseListing(make([]byte, 64<<20+1))
	require.ErrorContains(t, err, "larger than")
}

// FuzzParseListing: the listing comes from the network and its paths are
// joined to cache directories. Any bytes give a listing or an error, and
// every accepted path stays inside the directory it is joined to.
func FuzzParseListing(f *testing.F) {
	f.Add([]byte(`{"sha":"` + sha40 + `","siblings":[{"rfilename":"config.json","blobId":"` + sha40 + `","size":2}]}`))
	f.Add([]byte(`{"sha":"` + sha40 + `","siblings":[{"rfilename":"a/b.safetensors","lfs":{"sha256":"` + sha64 + `","size":9}}]}`))
	f.Add([]byte(`{"sha":"` + sha40 + `","siblings":[{"rfilename":"../x"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := hub.ParseListing(b)
		if err != nil {
			require.ErrorIs(t, err, hub.ErrListing)
			return
		}
		require.Len(t, l.Commit, 40)
		seen := map[string]bool{}
		for _, f := range l.Files {
			require.False(t, seen[f.Path])
			seen[f.Path] = true
			require.NotEmpty(t, f.Path)
			require.False(t, strings.HasPrefix(f.Path, "/"))
			require.NotContains(t, f.Path, `\`)
			for _, seg := range strings.Split(f.Path, "/") {
				require.NotContains(t, []string{"", ".", ".."}, seg)
			}
			require.GreaterOrEqual(t, f.Size, int64(-1))
			if e := f.ETag(); e != "" {
				require.Regexp(t, `^[0-9a-f]{40}([0-9a-f]{24})?$`, e)
			}
		}
	})
}
