// Package capability is the one vocabulary of serving paths and statuses
// shared by mach check (what could run), mach-serve's GET /v1/capabilities
// (what is running) and the registry. Keeping the names here means the static
// prediction and the runtime report are directly comparable.
package capability

import "fmt"

// Path names a way of serving a model.
type Path string

// The serving paths, in the order reports print them.
const (
	OpenAIHTTP         Path = "openai_http"
	ExpertStreaming    Path = "expert_streaming"
	ResidentStacked    Path = "resident_stacked"
	BF16Streaming      Path = "bf16_streaming"
	GGUFExperts2Bit    Path = "gguf_experts_2bit"
	Specdec            Path = "specdec"
	ContinuousBatching Path = "continuous_batching"
	TurboquantKV       Path = "turboquant_kv"
	PrefixKVReuse      Path = "prefix_kv_reuse"
	NativeToolGrammar  Path = "native_tool_grammar"
)

// Paths lists every serving path in report order.
func Paths() []Path {
	return []Path{
		OpenAIHTTP, ExpertStreaming, ResidentStacked, BF16Streaming, GGUFExperts2Bit,
		Specdec, ContinuousBatching, TurboquantKV, PrefixKVReuse, NativeToolGrammar,
	}
}

// Status says whether a path can run. A status describes what this build can
// do: a path that is not implemented is Blocked, never OK.
type Status string

// The statuses.
const (
	OK            Status = "ok"
	Blocked       Status = "blocked"
	NeedsArtifact Status = "needs_artifact"
	Unknown       Status = "unknown"
	NA            Status = "n/a"
)

// Valid reports whether s is one of the defined statuses.
func (s Status) Valid() bool {
	switch s {
	case OK, Blocked, NeedsArtifact, Unknown, NA:
		return true
	}
	return false
}

// Result is a status with the reason a person reads.
type Result struct {
	Status Status `json:"status"`
	Reason string `json:"reason"`
}

// Okf returns an OK result with a formatted reason.
func Okf(format string, args ...any) Result {
	return Result{Status: OK, Reason: fmt.Sprintf(format, args...)}
}

// Blockedf returns a Blocked result with a formatted reason.
func Blockedf(format string, args ...any) Result {
	return Result{Status: Blocked, Reason: fmt.Sprintf(format, args...)}
}

// Of returns a result with the given status and formatted reason.
func Of(s Status, format string, args ...any) Result {
	return Result{Status: s, Reason: fmt.Sprintf(format, args...)}
}
