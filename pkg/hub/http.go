package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/version"
)

// Headers the hub answers with (huggingface_hub reads the same ones).
const (
	HeaderRepoCommit   = "X-Repo-Commit"
	HeaderLinkedETag   = "X-Linked-Etag"
	HeaderLinkedSize   = "X-Linked-Size"
	headerErrorCode    = "X-Error-Code"
	headerErrorMessage = "X-Error-Message"
	maxErrorMessage    = 300
)

// serverError is an HTTP status the hub answered with, other than 401,
// 403 and 404.
type serverError struct {
	status int
	msg    string
}

func (e *serverError) Error() string { return e.msg }

// temporary: worth retrying (rate limiting, timeouts, server errors).
func (e *serverError) temporary() bool {
	return e.status == http.StatusTooManyRequests || e.status == http.StatusRequestTimeout || e.status >= 500
}

// transportError: the hub could not be reached or the connection broke.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// do sends one request with mach's User-Agent and the bearer token.
// header adds request headers (Range). A transport failure is a
// fault.ErrNetwork transportError naming the endpoint.
func (c *Client) do(ctx context.Context, method, u string, header http.Header, hc *http.Client) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("bad hub URL %q: %w; check %s", u, err, EnvEndpoint), fault.ErrUsage)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "mach/"+version.String())
	if c.Token != "" {
		// net/http drops it on a redirect to another host (the CDN), as
		// huggingface_hub does.
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fault.Mark(&transportError{fmt.Errorf("cannot reach %s (%v): are you offline? Set %s for a mirror, or pass a local checkpoint directory (--local-only)", c.Endpoint, unwrapURLError(err), EnvEndpoint)}, fault.ErrNetwork)
	}
	return resp, nil
}

// hubMessage is the hub's own explanation (X-Error-Message), cleaned and
// bounded, as "; hub says: …", or "".
func hubMessage(resp *http.Response) string {
	m := resp.Header.Get(headerErrorMessage)
	m = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, m)
	m = strings.TrimSpace(m)
	if m == "" {
		return ""
	}
	if len(m) > maxErrorMessage {
		m = m[:maxErrorMessage] + "…"
	}
	return "; hub says: " + m
}

// statusError turns an answer other than 200 or 206 into an error that
// says what to do: ErrNotFound for 404, ErrDenied for 401 and 403 (gated
// or private repos), a serverError otherwise. All are fault.ErrNetwork.
func statusError(resp *http.Response, c *Client, repo, revision, u string) error {
	code := resp.StatusCode
	switch {
	case code == http.StatusOK || code == http.StatusPartialContent:
		return nil
	case code == http.StatusNotFound:
		what := "check the repo id, the file and --revision " + revision
		switch resp.Header.Get(headerErrorCode) {
		case "RepoNotFound":
			what = "no repo " + repo + " (or it is private: set " + EnvToken + ")"
		case "RevisionNotFound":
			what = "no revision " + revision + " in " + repo + "; check --revision " + revision
		case "EntryNotFound":
			what = "no such file in " + repo + " at " + revision
		}
		return fault.Mark(fmt.Errorf("%w: %s (HTTP 404): %s%s", ErrNotFound, u, what, hubMessage(resp)), fault.ErrNetwork)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		page := c.Endpoint + "/" + repo
		kind := "gated or private"
		if resp.Header.Get(headerErrorCode) == "GatedRepo" {
			kind = "gated"
		}
		hint := fmt.Sprintf("%s is %s: accept its terms on %s while logged in, then set %s or run `huggingface-cli login` (it writes $HF_HOME/token)", repo, kind, page, EnvToken)
		if c.Token != "" {
			hint = fmt.Sprintf("the token (%s or $HF_HOME/token) has no access to %s, which is %s: accept its terms on %s with that account or use a token that has access", EnvToken, repo, kind, page)
		}
		return fault.Mark(fmt.Errorf("%w: %s (HTTP %d): %s%s", ErrDenied, u, code, hint, hubMessage(resp)), fault.ErrNetwork)
	}
	return fault.Mark(&serverError{status: code, msg: fmt.Sprintf("%s answered HTTP %d for %s%s", c.Endpoint, code, u, hubMessage(resp))}, fault.ErrNetwork)
}

// retryable reports whether a failed transfer is worth another try: a
// broken connection, a timeout, rate limiting or a server error. Denials,
// missing files, checksum mismatches and local I/O errors are not.
func retryable(err error) bool {
	var se *serverError
	if errors.As(err, &se) {
		return se.temporary()
	}
	var te *transportError
	if errors.As(err, &te) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, errBodyBroken)
}

// errBodyBroken: the connection ended before the body did.
var errBodyBroken = errors.New("download interrupted")

// downloadClient has no overall deadline (a shard takes minutes); a stalled
// body is caught by the stall timer instead.
func (c *Client) downloadClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: DialTimeout}).DialContext,
			TLSHandshakeTimeout:   DialTimeout,
			ResponseHeaderTimeout: RequestTimeout,
			MaxIdleConnsPerHost:   16,
		},
	}
}
