// Scripted-model writes the scripted qwen3_moe checkpoint of
// pkg/server/servertest into DIR, for the openai client test
// (tools/openai-client/test.mjs): its greedy output is a tool call when the
// request has tools, an answer after a tool result, else reasoning and a
// greeting.
//
// Usage: go run ./tools/openai-client/scripted-model DIR
package main

import (
	"fmt"
	"os"

	"github.com/maniac-ai/mach/pkg/server/servertest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: scripted-model DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "scripted-model:", err)
		os.Exit(1)
	}
	if err := servertest.Write(dir); err != nil {
		fmt.Fprintln(os.Stderr, "scripted-model:", err)
		os.Exit(1)
	}
}
