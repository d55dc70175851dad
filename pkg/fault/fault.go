// Package fault classifies errors by what the caller should do about them:
// the command-line front ends map these classes to exit statuses in one
// place (package cliapp), and library packages mark their errors without
// knowing anything about command lines.
package fault

import "errors"

// The classes. Library code marks an error with one of them through Mark (or
// wraps one with %w); callers test them with errors.Is.
var (
	// ErrUsage: the command line or request was malformed.
	ErrUsage = errors.New("usage error")
	// ErrUnsupported: the answer is no (an unsupported checkpoint or
	// architecture, a failed verification).
	ErrUnsupported = errors.New("unsupported")
	// ErrNotImplemented: the feature exists in the interface but this build
	// cannot do it yet.
	ErrNotImplemented = errors.New("blocked: not implemented")
	// ErrIO: a file is missing, unreadable, truncated or corrupt.
	ErrIO = errors.New("input/output error")
	// ErrNetwork: a remote service could not be reached or answered badly.
	ErrNetwork = errors.New("network error")
)

// Mark returns err classified as kind, keeping err's message unchanged.
// errors.Is(Mark(err, k), k) and errors.Is(Mark(err, k), err) both hold.
func Mark(err, kind error) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, kind: kind}
}

type marked struct {
	err  error
	kind error
}

func (m *marked) Error() string   { return m.err.Error() }
func (m *marked) Unwrap() []error { return []error{m.err, m.kind} }

// NotImplemented returns an error saying that what is named is not
// implemented in this build, classified as ErrNotImplemented.
func NotImplemented(what string) error {
	return Mark(errors.New("blocked: "+what+" is not implemented in this build"), ErrNotImplemented)
}
