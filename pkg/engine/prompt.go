package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/tokenizer"
)

// Prompter turns requests into prompt token ids with a checkpoint's
// tokenizer and chat template. It loads no weights, so --tokenize-only works
// on a directory holding only config.json and tokenizer files.
type Prompter struct {
	dir       string
	modelType string // config.json's model_type, when known (built-in templates)
	tok       *tokenizer.Tokenizer
	tokErr    error

	once    sync.Once
	tmpl    *chat.Template
	tmplErr error
}

// NewPrompter reads dir's tokenizer. A directory without tokenizer.json
// gives a Prompter that accepts only raw token ids.
func NewPrompter(dir string) *Prompter {
	p := &Prompter{dir: dir}
	// The model type picks a built-in chat template for a checkpoint that
	// ships none (gpt_oss: harmony), --tokenize-only included.
	if cfg, err := modelconfig.Load(dir); err == nil {
		p.modelType = cfg.ModelType
	}
	p.tok, p.tokErr = tokenizer.Load(dir)
	return p
}

// Tokenizer returns the tokenizer, or why there is none.
func (p *Prompter) Tokenizer() (*tokenizer.Tokenizer, error) { return p.tok, p.tokErr }

// Template returns the chat template (a gpt_oss checkpoint without one
// gets the built-in harmony template), loaded once.
func (p *Prompter) Template() (*chat.Template, error) { return p.template() }

func (p *Prompter) template() (*chat.Template, error) {
	p.once.Do(func() { p.tmpl, p.tmplErr = chat.LoadForModel(p.dir, p.modelType) })
	return p.tmpl, p.tmplErr
}

// Prompt returns the prompt's token ids: the raw ids, the chat template
// rendered with a generation prompt and encoded without added special
// tokens (as transformers' apply_chat_template does), or the text encoded
// as Hugging Face tokenizers' encode does by default (the post-processor
// decides whether a BOS is added).
func (p *Prompter) Prompt(req *Request) ([]int32, error) {
	ids, _, err := p.Render(req)
	return ids, err
}

// Render is Prompt that also returns the text that was encoded: the
// rendered chat template or the prompt text ("" for raw ids). Chat output
// parsers read it (chat.PromptOpensReasoning).
func (p *Prompter) Render(req *Request) ([]int32, string, error) {
	sources := 0
	for _, set := range []bool{req.PromptTokens != nil, req.Messages != nil, req.Prompt != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return nil, "", fault.Mark(errors.New("a request needs exactly one of prompt text, chat messages or prompt token ids"), fault.ErrUsage)
	}
	if req.PromptTokens != nil {
		if len(req.PromptTokens) == 0 {
			return nil, "", fault.Mark(errors.New("empty prompt"), fault.ErrUsage)
		}
		return req.PromptTokens, "", nil
	}
	if p.tokErr != nil {
		return nil, "", fmt.Errorf("%w (a checkpoint without a tokenizer takes raw token ids: --prompt-tokens 1,2,3)", p.tokErr)
	}
	text := req.Prompt
	addSpecial := true
	if req.Messages != nil {
		t, err := p.template()
		if err != nil {
			return nil, "", err
		}
		if text, err = t.Render(req.Messages, chat.Options{AddGenerationPrompt: true, Tools: req.Tools, Kwargs: req.TemplateKwargs}); err != nil {
			return nil, "", err
		}
		addSpecial = false
	}
	ids := p.tok.Encode(text, addSpecial)
	if len(ids) == 0 {
		return nil, "", fault.Mark(errors.New("the prompt encodes to no tokens"), fault.ErrUsage)
	}
	return ids, text, nil
}

// eosIDs collects the end-of-sequence ids: the tokenizer's (which reads
// generation_config.json and the special tokens) and, for checkpoints
// without a tokenizer, generation_config.json's and config.json's
// eos_token_id.
func eosIDs(dir string, tok *tokenizer.Tokenizer) (map[int32]bool, error) {
	out := map[int32]bool{}
	if tok != nil {
		for _, id := range tok.EOS() {
			out[id] = true
		}
	}
	for _, name := range []string{"generation_config.json", "config.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fault.Mark(err, fault.ErrIO)
		}
		var c struct {
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fault.Mark(fmt.Errorf("%s: %w", filepath.Join(dir, name), err), fault.ErrIO)
		}
		var one int32
		var many []int32
		switch {
		case len(c.EOS) == 0 || string(c.EOS) == "null":
		case json.Unmarshal(c.EOS, &one) == nil:
			out[one] = true
		case json.Unmarshal(c.EOS, &many) == nil:
			for _, id := range many {
				out[id] = true
			}
		default:
			return nil, fault.Mark(fmt.Errorf("%s: eos_token_id %s is not an id or a list of ids", filepath.Join(dir, name), c.EOS), fault.ErrIO)
		}
	}
	return out, nil
}
