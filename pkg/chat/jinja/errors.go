package jinja

import (
	"errors"
	"fmt"
)

// Error kinds a caller can branch on with errors.Is.
var (
	// ErrSyntax: the template does not parse, or uses a construct this
	// engine does not implement (reported at Parse, never at render).
	ErrSyntax = errors.New("template syntax error")
	// ErrRaised: the template called raise_exception(message).
	ErrRaised = errors.New("template raised an exception")
	// ErrRender: evaluation failed (a type error, an undefined value used,
	// an operation the sandbox refuses, a limit reached).
	ErrRender = errors.New("template render error")
)

// SyntaxError is a parse failure at a line of the template source.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// RaisedError carries the message of raise_exception(message), verbatim.
type RaisedError struct{ Message string }

func (e *RaisedError) Error() string { return e.Message }
func (e *RaisedError) Unwrap() error { return ErrRaised }

// RenderError is an evaluation failure. Kind names the Python exception
// jinja2 would raise in the same place (TypeError, UndefinedError,
// SecurityError, ...), so fixtures recorded with transformers can be
// compared by kind.
type RenderError struct {
	Kind string
	Msg  string
	Line int
}

func (e *RenderError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Kind, e.Msg)
	}
	return e.Kind + ": " + e.Msg
}
func (e *RenderError) Unwrap() error { return ErrRender }

func typeErrorf(format string, args ...any) error {
	return &RenderError{Kind: "TypeError", Msg: fmt.Sprintf(format, args...)}
}

func valueErrorf(format string, args ...any) error {
	return &RenderError{Kind: "ValueError", Msg: fmt.Sprintf(format, args...)}
}

func undefinedError(u Undefined) error {
	if u.unsafe != "" {
		return securityError(u.unsafe)
	}
	name := u.Name
	if name == "" {
		name = "value"
	}
	return &RenderError{Kind: "UndefinedError", Msg: fmt.Sprintf("'%s' is undefined", name)}
}

func securityError(msg string) error { return &RenderError{Kind: "SecurityError", Msg: msg} }

func limitError(msg string) error { return &RenderError{Kind: "LimitError", Msg: msg} }
