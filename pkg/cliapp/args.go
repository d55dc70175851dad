package cliapp

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Interspersed reorders args (args[0] is the program name) so that flags
// given after positional arguments are parsed too: urfave/cli, like Go's
// flag package, stops at the first positional argument, but the seed
// documents `mach check MODEL --json`. Flags keep their order; a flag that
// takes a value keeps the token after it; everything after "--" stays
// positional.
func Interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range app.Flags {
		dg, ok := f.(cli.DocGenerationFlag)
		if !ok {
			continue
		}
		for _, n := range f.Names() {
			takesValue[n] = dg.TakesValue()
		}
	}
	var flags, positional []string
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			positional = append(positional, rest[i+1:]...)
			i = len(rest)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(rest) {
				flags = append(flags, rest[i+1])
				i++
			}
		default:
			positional = append(positional, a)
		}
	}
	out := append([]string{args[0]}, flags...)
	if len(positional) > 0 {
		out = append(out, "--")
		out = append(out, positional...)
	}
	return out
}
