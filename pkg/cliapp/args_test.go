package cliapp

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

func TestInterspersed(t *testing.T) {
	app := NewApp("x", "", "")
	app.Flags = append(app.Flags, &cli.BoolFlag{Name: "json"}, &cli.IntFlag{Name: "context-length", Aliases: []string{"c"}})
	tests := []struct{ in, want []string }{
		{[]string{"x"}, []string{"x"}},
		{[]string{"x", "MODEL", "--json"}, []string{"x", "--json", "--", "MODEL"}},
		{[]string{"x", "MODEL", "--context-length", "16384", "--json"}, []string{"x", "--context-length", "16384", "--json", "--", "MODEL"}},
		{[]string{"x", "-c", "5", "MODEL"}, []string{"x", "-c", "5", "--", "MODEL"}},
		{[]string{"x", "MODEL", "--context-length=7"}, []string{"x", "--context-length=7", "--", "MODEL"}},
		{[]string{"x", "--log-level", "debug", "MODEL"}, []string{"x", "--log-level", "debug", "--", "MODEL"}},
		{[]string{"x", "--", "-dash-model", "--json"}, []string{"x", "--", "-dash-model", "--json"}},
		{[]string{"x", "-", "--json"}, []string{"x", "--json", "--", "-"}},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Interspersed(app, tt.in), "%q", tt.in)
	}
	// The reordered arguments parse as intended.
	var got struct {
		json bool
		n    int
		args []string
	}
	app.Action = func(c *cli.Context) error {
		got.json, got.n, got.args = c.Bool("json"), c.Int("context-length"), c.Args().Slice()
		return nil
	}
	require.NoError(t, app.Run(Interspersed(app, []string{"x", "MODEL", "--context-length", "9", "--json"})))
	require.True(t, got.json)
	require.Equal(t, 9, got.n)
	require.Equal(t, []string{"MODEL"}, got.args)
}
