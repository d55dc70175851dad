// Package cliapp is the command-line plumbing every mach binary shares: the
// urfave/cli application with --version and --log-level, the one mapping from
// errors to exit statuses, and the output printers (go-pretty tables for
// people, JSON for tools). Library packages never see *cli.Context; commands
// turn flags into option structs and call a library run function.
package cliapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/version"
	"github.com/urfave/cli/v2"
)

// Exit statuses shared by every mach command.
const (
	ExitOK             = 0   // success
	ExitNo             = 1   // the answer is no: unsupported checkpoint, failed verification
	ExitUsage          = 2   // bad flags or arguments
	ExitNotImplemented = 3   // the feature is not implemented in this build
	ExitIO             = 4   // a file is missing, unreadable, truncated or corrupt
	ExitNetwork        = 5   // a remote service could not be reached or answered badly
	ExitFailure        = 6   // any other failure
	ExitInterrupted    = 130 // interrupted by a signal
)

// ExitStatusHelp is the EXIT STATUS section appended to every command's help.
const ExitStatusHelp = `EXIT STATUS:
   0    success
   1    the answer is no (unsupported checkpoint or architecture, failed verification)
   2    usage error (bad flags or arguments)
   3    not implemented in this build
   4    input/output error (missing, unreadable, truncated or corrupt file)
   5    network error
   6    other failure
   130  interrupted`

// ExitCode maps an error to the process exit status. It is the only place
// that does so.
func ExitCode(err error) int {
	var ec cli.ExitCoder
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.Is(err, fault.ErrUsage):
		return ExitUsage
	case errors.Is(err, fault.ErrUnsupported):
		return ExitNo
	case errors.Is(err, fault.ErrNotImplemented):
		return ExitNotImplemented
	case errors.Is(err, fault.ErrIO):
		return ExitIO
	case errors.Is(err, fault.ErrNetwork):
		return ExitNetwork
	case errors.As(err, &ec):
		return ec.ExitCode()
	}
	return ExitFailure
}

// Usagef returns a usage error with a formatted message.
func Usagef(format string, args ...any) error {
	return fault.Mark(fmt.Errorf(format, args...), fault.ErrUsage)
}

// LogLevelFlag selects the slog level for diagnostics on stderr.
var logLevelFlag = &cli.StringFlag{
	Name:    "log-level",
	Value:   "warn",
	Usage:   "diagnostics on stderr: debug, info, warn or error",
	EnvVars: []string{"MACH_LOG_LEVEL"},
}

// JSONFlag switches output to JSON for scripts.
func JSONFlag(usage string) *cli.BoolFlag {
	if usage == "" {
		usage = "print machine-readable JSON instead of a table"
	}
	return &cli.BoolFlag{Name: "json", Usage: usage}
}

// NewApp returns a cli.App with mach's common behaviour: --version from the
// build, --log-level, help that ends with the exit statuses, usage errors
// classified as fault.ErrUsage, and no os.Exit inside urfave/cli.
func NewApp(name, usage, description string) *cli.App {
	app := cli.NewApp()
	app.Name = name
	app.HelpName = name
	app.Usage = usage
	app.Description = strings.TrimSpace(description) + "\n\n" + ExitStatusHelp
	app.Version = version.String()
	app.EnableBashCompletion = true
	app.HideHelpCommand = true
	app.Flags = []cli.Flag{logLevelFlag}
	app.Writer = os.Stdout
	app.ErrWriter = os.Stderr
	app.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return fault.Mark(err, fault.ErrUsage)
	}
	app.ExitErrHandler = func(*cli.Context, error) {}
	app.Before = func(c *cli.Context) error {
		lvl, err := parseLevel(c.String("log-level"))
		if err != nil {
			return err
		}
		slog.SetDefault(slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: lvl})))
		return nil
	}
	return app
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, Usagef("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// Main runs app with args under a context cancelled by SIGINT/SIGTERM,
// prints a failure as "name: message" on stderr and returns the exit status.
// A command's main is: os.Exit(cliapp.Main(newApp(), os.Args)).
func Main(app *cli.App, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, app, args, app.ErrWriter)
}

// Run runs app and reports a failure on stderr; it returns the exit status.
// Tests call it directly.
func Run(ctx context.Context, app *cli.App, args []string, stderr io.Writer) int {
	err := app.RunContext(ctx, args)
	code := ExitCode(err)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", app.Name, err)
		if code == ExitUsage {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", app.Name)
		}
	}
	return code
}

// NoArgs fails with a usage error when the command got positional arguments.
func NoArgs(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return Usagef("unexpected argument %q", c.Args().First())
	}
	return nil
}

// NotImplemented is the Action of a command whose work is not built yet: it
// fails with exit status ExitNotImplemented and prints no fake output.
func NotImplemented(c *cli.Context) error {
	return fault.NotImplemented(c.App.Name)
}
