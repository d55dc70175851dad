// Package archconfig reads and validates each architecture's config.json
// the way its loader does, without the kernels: the model packages
// (pkg/model/<arch>) build their forward-pass options on these values, and
// mach check, mach-serve's start-up and mach-prune call the same functions
// (through registry.Arch.CheckConfig), so a checkpoint mach check calls
// supported is one the loader accepts, and a refusal reads the same
// everywhere.
package archconfig

import (
	"fmt"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// The model types this package reads.
const (
	Qwen3MoEType   = "qwen3_moe"
	Qwen35MoEType  = "qwen3_5_moe"
	GptOssType     = "gpt_oss"
	Gemma4Type     = "gemma4"
	DeepSeekV4Type = "deepseek_v4"
)

// Checks returns, per model_type, the function that validates a config as
// that architecture's loader does (nil error: the loader accepts it).
func Checks() map[string]func(*modelconfig.Config) error {
	return map[string]func(*modelconfig.Config) error{
		Qwen3MoEType:   func(c *modelconfig.Config) error { _, err := ParseQwen3MoE(c); return err },
		Qwen35MoEType:  func(c *modelconfig.Config) error { _, err := ParseQwen35MoE(c); return err },
		GptOssType:     func(c *modelconfig.Config) error { _, err := ParseGptOss(c); return err },
		Gemma4Type:     func(c *modelconfig.Config) error { _, err := ParseGemma4(c); return err },
		DeepSeekV4Type: func(c *modelconfig.Config) error { _, err := ParseDeepSeekV4(c); return err },
	}
}

// unsupported marks a refusal of cfg as fault.ErrUnsupported, prefixed
// with the checkpoint's name.
func unsupported(cfg *modelconfig.Config, format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%s: %s", cfg.Name(), fmt.Sprintf(format, args...)), fault.ErrUnsupported)
}

// unsupportedErr marks err as fault.ErrUnsupported, prefixed with the
// checkpoint's name.
func unsupportedErr(cfg *modelconfig.Config, err error) error {
	return fault.Mark(fmt.Errorf("%s: %w", cfg.Name(), err), fault.ErrUnsupported)
}
