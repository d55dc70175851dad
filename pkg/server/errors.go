package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/scheduler"
)

// apiError is an error in OpenAI's shape with its HTTP status.
type apiError struct {
	Status  int    `json:"-"`
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   any    `json:"param"`
	Code    any    `json:"code"`
	// RetryAfter, in seconds, is sent as Retry-After (429, 503).
	RetryAfter int `json:"-"`
}

func (e *apiError) Error() string { return e.Message }

// badRequest is a 400 naming the offending field.
func badRequest(param, format string, args ...any) *apiError {
	e := &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...), Type: "invalid_request_error"}
	if param != "" {
		e.Param = param
	}
	return e
}

// notSupported is a 400 for a valid OpenAI feature this build cannot honour.
func notSupported(param, format string, args ...any) *apiError {
	e := badRequest(param, format, args...)
	e.Code = "not_supported"
	return e
}

// asAPIError turns any error from a handler into the response error.
func asAPIError(err error) *apiError {
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
			Message: fmt.Sprintf("request body larger than %d bytes (mach-serve --max-body-mb)", mbe.Limit)}
	case errors.Is(err, scheduler.ErrQueueFull):
		return &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "queue_full", RetryAfter: 1,
			Message: err.Error() + "; retry later (mach-serve --max-queue)"}
	case errors.Is(err, scheduler.ErrDraining), errors.Is(err, scheduler.ErrStopped):
		return &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "draining", RetryAfter: 5,
			Message: "the server is shutting down and takes no new requests"}
	case errors.Is(err, scheduler.ErrTooLarge):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "context_length_exceeded", Param: "messages",
			Message: err.Error()}
	case errors.Is(err, fault.ErrUsage):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: err.Error()}
	case errors.Is(err, fault.ErrNotImplemented):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "not_supported", Message: err.Error()}
	}
	return &apiError{Status: http.StatusInternalServerError, Type: "server_error", Message: err.Error()}
}

// writeError sends e as {"error": {...}}.
func writeError(w http.ResponseWriter, e *apiError) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, e.Status, map[string]any{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
