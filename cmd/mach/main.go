// Mach is the git-style front end of the mach toolkit: `mach NAME ARGS…`
// runs `mach-NAME ARGS…` found next to the mach executable or on PATH, with
// the same stdin, stdout, stderr, signals and exit status.
//
// Usage:
//
//	mach                 list the available commands
//	mach help [NAME]     list the commands, or show NAME's help
//	mach --version       print the version and the commands
//	mach NAME [ARGS…]    run mach-NAME ARGS…
//
// Examples:
//
//	mach archs --json
//	mach check ./checkpoints/qwen3-coder --context-length 16384
//	mach check --all-archs
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/dispatch"
	"github.com/maniac-ai/mach/pkg/version"
)

func main() {
	err := run(os.Args[1:], dispatch.NewFinder(), os.Stdout, dispatch.Exec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mach: %v\n", err)
	}
	os.Exit(cliapp.ExitCode(err))
}

// run dispatches args. execFn replaces the process (or runs the child) and
// is a parameter so tests can observe it.
func run(args []string, f dispatch.Finder, stdout io.Writer, execFn func(string, []string) error) error {
	if len(args) == 0 {
		usage(stdout, f)
		return nil
	}
	switch args[0] {
	case "-h", "--help", "help":
		if args[0] == "help" && len(args) > 1 {
			p, err := f.Find(args[1])
			if err != nil {
				return err
			}
			return execFn(p, []string{"--help"})
		}
		usage(stdout, f)
		return nil
	case "-v", "--version", "version":
		fmt.Fprintf(stdout, "mach version %s\n\n", version.String())
		commands(stdout, f)
		return nil
	}
	if args[0] != "" && args[0][0] == '-' {
		return cliapp.Usagef("unknown flag %q; run 'mach help'", args[0])
	}
	p, err := f.Find(args[0])
	if err != nil {
		return err
	}
	return execFn(p, args[1:])
}

func usage(w io.Writer, f dispatch.Finder) {
	fmt.Fprintf(w, `mach %s — run Mixture-of-Experts language models on one machine

Usage:
  mach NAME [ARGS...]    run mach-NAME (found next to mach or on PATH)
  mach help NAME         show a command's help
  mach --version         print the version

`, version.String())
	commands(w, f)
	fmt.Fprint(w, `
Examples:
  mach archs --json
  mach check ./checkpoints/qwen3-coder
  mach check --all-archs
`)
}

func commands(w io.Writer, f dispatch.Finder) {
	avail := f.Available()
	if len(avail) == 0 {
		fmt.Fprintln(w, "No mach-* commands found next to mach or on PATH.")
		return
	}
	fmt.Fprintln(w, "Commands:")
	for _, c := range avail {
		fmt.Fprintf(w, "  %-16s %s\n", c.Name, c.Summary)
	}
}
