package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

// sseWriter writes a server-sent event stream. Headers are committed with
// the first event, so errors before it can still be HTTP errors; after it
// they are reported in the stream.
type sseWriter struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	committed bool
	buf       bytes.Buffer
}

func newSSE(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

func (s *sseWriter) commit() {
	if s.committed {
		return
	}
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	// A stream lasts as long as the generation: no server-wide write
	// deadline applies to it.
	_ = s.rc.SetWriteDeadline(time.Time{})
	s.committed = true
}

// event writes one data: frame with v as JSON and flushes it.
func (s *sseWriter) event(v any) error {
	s.commit()
	s.buf.Reset()
	s.buf.WriteString("data: ")
	enc := json.NewEncoder(&s.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	s.buf.WriteString("\n") // Encode ended the line; a blank line ends the event
	return s.write()
}

// done ends an OpenAI stream.
func (s *sseWriter) done() error {
	s.commit()
	s.buf.Reset()
	s.buf.WriteString("data: [DONE]\n\n")
	return s.write()
}

func (s *sseWriter) write() error {
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}

// fail reports err: as an HTTP error before the stream started, else as
// an error event followed by [DONE].
func (s *sseWriter) fail(err error) {
	e := asAPIError(err)
	if !s.committed {
		writeError(s.w, e)
		return
	}
	_ = s.event(map[string]any{"error": e})
	_ = s.done()
}
