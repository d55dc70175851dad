package server

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/scheduler"
)

// promptInput reads prompt: a string, an array of token ids, or an array
// holding one of those (OpenAI's batch forms with more than one prompt are
// not supported: send separate requests).
func promptInput(raw json.RawMessage) (text string, ids []int32, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, badRequest("prompt", "prompt is missing")
	}
	if json.Unmarshal(raw, &text) == nil {
		if text == "" {
			return "", nil, badRequest("prompt", "prompt is empty")
		}
		return text, nil, nil
	}
	var nums []float64
	if json.Unmarshal(raw, &nums) == nil {
		if len(nums) == 0 {
			return "", nil, badRequest("prompt", "prompt is an empty array")
		}
		ids = make([]int32, len(nums))
		for i, n := range nums {
			if n != math.Trunc(n) || n < 0 || n > math.MaxInt32 {
				return "", nil, badRequest("prompt", "prompt token %s (position %d) is not a token id: want a whole number from 0", strconv.FormatFloat(n, 'g', -1, 64), i)
			}
			ids[i] = int32(n)
		}
		return "", ids, nil
	}
	var many []json.RawMessage
	if err := json.Unmarshal(raw, &many); err != nil {
		return "", nil, badRequest("prompt", "prompt must be a string, an array of token ids, or an array holding one of those")
	}
	if len(many) != 1 {
		return "", nil, notSupported("prompt", "%d prompts in one request are not supported: send one request per prompt (they are batched together)", len(many))
	}
	return promptInput(many[0])
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, asAPIError(err))
		return
	}
	gen, echo, err := s.completionJob(&req)
	if err != nil {
		writeError(w, asAPIError(err))
		return
	}
	id, created := newID("cmpl-"), time.Now().Unix()
	resp := func(text string, lp *completionLogprobs, finish *string, u *usage) completionResponse {
		return completionResponse{ID: id, Object: "text_completion", Created: created, Model: s.model.Name, SystemFingerprint: s.fingerprint(),
			Choices: []completionChoice{{Text: text, Logprobs: lp, FinishReason: finish}}, Usage: u}
	}
	wantLP := req.Logprobs != nil
	// Logprobs of the generated tokens; text_offset counts bytes of the
	// returned text (echoed prompt included).
	lpOf := func(tk engine.Token, offset int) *completionLogprobs {
		text := s.tokenText(tk.ID)
		top := map[string]float32{}
		for _, t := range tk.Top {
			top[s.tokenText(t.Token)] = t.Logprob
		}
		return &completionLogprobs{Tokens: []string{text}, TokenLogprobs: []float32{tk.Logprob}, TopLogprobs: []map[string]float32{top}, TextOffset: []int{offset}}
	}
	if req.Stream {
		sse := newSSE(w)
		offset := len(echo)
		res, err := s.sched.Generate(r.Context(), gen, func(tk engine.Token) error {
			var lp *completionLogprobs
			if wantLP && tk.ID >= 0 {
				lp = lpOf(tk, offset)
			}
			text := tk.Text
			if echo != "" {
				text, echo = echo+text, ""
			}
			offset += len(tk.Text)
			if text == "" && lp == nil {
				return nil
			}
			return sse.event(resp(text, lp, nil, nil))
		})
		if err != nil {
			if r.Context().Err() == nil {
				sse.fail(err)
			}
			return
		}
		reason := res.FinishReason
		if err := sse.event(resp(echo, nil, &reason, nil)); err != nil {
			return
		}
		if o := req.StreamOptions; o != nil && o.IncludeUsage {
			u := usageOf(res)
			c := resp("", nil, nil, &u)
			c.Choices = []completionChoice{}
			if err := sse.event(c); err != nil {
				return
			}
		}
		_ = sse.done()
		return
	}
	var all *completionLogprobs
	if wantLP {
		all = &completionLogprobs{Tokens: []string{}, TokenLogprobs: []float32{}, TopLogprobs: []map[string]float32{}, TextOffset: []int{}}
	}
	offset := len(echo)
	res, err := s.sched.Generate(r.Context(), gen, func(tk engine.Token) error {
		if wantLP && tk.ID >= 0 {
			lp := lpOf(tk, offset)
			all.Tokens = append(all.Tokens, lp.Tokens...)
			all.TokenLogprobs = append(all.TokenLogprobs, lp.TokenLogprobs...)
			all.TopLogprobs = append(all.TopLogprobs, lp.TopLogprobs...)
			all.TextOffset = append(all.TextOffset, lp.TextOffset...)
		}
		offset += len(tk.Text)
		return nil
	})
	if err != nil {
		if r.Context().Err() == nil {
			writeError(w, asAPIError(err))
		}
		return
	}
	reason := res.FinishReason
	u := usageOf(res)
	writeJSON(w, http.StatusOK, resp(echo+res.Text, all, &reason, &u))
}

// completionJob validates a completions request; echo is the prompt text
// to put before the output (echo: true).
func (s *Server) completionJob(req *completionRequest) (*scheduler.Request, string, error) {
	if err := s.checkModel(req.Model); err != nil {
		return nil, "", err
	}
	if req.N != nil && *req.N != 1 {
		return nil, "", notSupported("n", "n=%d is not supported: send separate requests (they are batched together)", *req.N)
	}
	if req.BestOf != nil && *req.BestOf != 1 {
		return nil, "", notSupported("best_of", "best_of=%d is not supported", *req.BestOf)
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return nil, "", notSupported("suffix", "suffix (fill-in-the-middle) is not supported")
	}
	top := 0
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > 5 {
			return nil, "", badRequest("logprobs", "logprobs %d is out of range: want 0 to 5", *req.Logprobs)
		}
		top = *req.Logprobs
	}
	opts, stop, err := req.sampling(req.Logprobs != nil, top)
	if err != nil {
		return nil, "", err
	}
	text, ids, err := promptInput(req.Prompt)
	if err != nil {
		return nil, "", err
	}
	if vocab := s.sched.Vocab(); vocab > 0 {
		for i, id := range ids {
			if int(id) >= vocab {
				return nil, "", badRequest("prompt", "prompt token %d (position %d) is outside the model's vocabulary: token ids are 0 to %d (vocab_size %d)", id, i, vocab-1, vocab)
			}
		}
	}
	prompt, _, err := s.model.Prompter.Render(&engine.Request{Prompt: text, PromptTokens: ids})
	if err != nil {
		return nil, "", err
	}
	mt := req.MaxTokens
	if mt == nil {
		// OpenAI's default for completions.
		d := min(16, max(s.sched.Options().ContextLength-len(prompt), 0))
		if d > 0 {
			mt = &d
		}
	}
	n, err := s.maxTokens(mt, "max_tokens", len(prompt))
	if err != nil {
		return nil, "", err
	}
	echo := ""
	if req.Echo {
		echo = text
		if ids != nil {
			if tok, _ := s.model.Prompter.Tokenizer(); tok != nil {
				echo = tok.Decode(ids, false)
			}
		}
	}
	var dec engine.TextDecoder
	if s.model.NewDecoder != nil {
		dec = s.model.NewDecoder(true)
	}
	return &scheduler.Request{Prompt: prompt, MaxTokens: n, Sampling: opts, Stop: stop, Decoder: dec}, echo, nil
}
