package chat

import (
	_ "embed"
	"errors"
)

// harmonyTemplate is the gpt-oss chat template (as llama.cpp vendors it from
// openai/gpt-oss), used for gpt_oss checkpoints or tokenizers that ship
// none. Its renderings are checked byte for byte against transformers.
//
//go:embed templates/gpt_oss.jinja
var harmonyTemplate string

// LoadForModel is Load, except that a gpt_oss directory without a chat
// template gets the built-in harmony template (with the directory's special
// tokens).
func LoadForModel(dir, modelType string) (*Template, error) {
	t, err := Load(dir)
	if err == nil || modelType != "gpt_oss" || !errors.Is(err, ErrNoTemplate) {
		return t, err
	}
	special, err := loadSpecialTokens(dir)
	if err != nil {
		return nil, err
	}
	return newTemplate(harmonyTemplate, "built-in gpt-oss harmony template", special)
}
