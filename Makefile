# mach — build, test and release. `make help` lists the targets.

SHELL       := /bin/bash
GO          ?= go
PREFIX      ?= /usr/local
BIN         := bin
MODULE      := github.com/maniac-ai/mach
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS     := -s -w -X $(MODULE)/pkg/version.Version=$(VERSION) -X $(MODULE)/pkg/version.Commit=$(COMMIT)
TOOLS       := $(CURDIR)/.tools/bin

# Discovery commands never link cgo or compute kernels (deps_test.go).
LIGHT_CMDS  := mach mach-archs mach-models mach-check
# Commands that compute (later linked against GPU backends).
HEAVY_CMDS  := mach-generate mach-serve mach-convert mach-prune mach-reap mach-export-sidecar
CMDS        := $(LIGHT_CMDS) $(HEAVY_CMDS)

.DEFAULT_GOAL := build

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## build every binary into bin/
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(LIGHT_CMDS))
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(HEAVY_CMDS))

.PHONY: test
test: ## run every test: go test ./..., then the official openai client against mach-serve
	$(GO) test ./...
	$(MAKE) --no-print-directory test-openai-client

# The official openai npm client (pinned in tools/openai-client) against a
# started mach-serve: the default model and a scripted checkpoint whose
# greedy output is a tool call. Needs node >= 20 and npm; fails loudly
# without them unless MACH_SKIP_OPENAI_CLIENT=1.
OPENAI_CLIENT := tools/openai-client

.PHONY: test-openai-client
test-openai-client: ## the official openai npm client against mach-serve (MACH_SKIP_OPENAI_CLIENT=1 skips)
	@if [ "$$MACH_SKIP_OPENAI_CLIENT" = 1 ]; then echo "test-openai-client: skipped (MACH_SKIP_OPENAI_CLIENT=1)"; exit 0; fi; \
	  command -v node >/dev/null && command -v npm >/dev/null || \
	    { echo "test-openai-client: node and npm are needed (install Node.js >= 20, or set MACH_SKIP_OPENAI_CLIENT=1 to skip)" >&2; exit 1; }; \
	  set -e; \
	  if [ ! -f $(OPENAI_CLIENT)/node_modules/.package-lock.json ] || [ $(OPENAI_CLIENT)/package-lock.json -nt $(OPENAI_CLIENT)/node_modules/.package-lock.json ]; then \
	    (cd $(OPENAI_CLIENT) && npm ci --no-audit --no-fund); fi; \
	  mkdir -p $(BIN); $(GO) build -o $(BIN)/mach-serve ./cmd/mach-serve; \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(GO) run ./$(OPENAI_CLIENT)/scripted-model "$$tmp/scripted"; \
	  node $(OPENAI_CLIENT)/test.mjs --serve $(BIN)/mach-serve --scripted "$$tmp/scripted"

.PHONY: lint
lint: ## gofmt check and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: bench
bench: ## run the benchmarks once; the engine's writes a Qwen3-30B-A3B-shaped checkpoint (MACH_BENCH_LAYERS layers, default 4) and reports bandwidth, decode and prefill speed, peak RSS
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

.PHONY: bench-serve
bench-serve: ## load test of mach-serve on loopback: 64 concurrent streaming chat clients, 128 requests on a synthetic qwen3_moe; aggregate tok/s, p50/p99 TTFT and inter-token latency, ratio to single-stream throughput (MACH_BENCH_CLIENTS, _REQUESTS, _TOKENS, _SECONDS)
	$(GO) test -run '^$$' -bench BenchmarkServeLoad -benchtime 1x -timeout 30m ./pkg/server/

.PHONY: bench-streaming
bench-streaming: ## expert streaming from SSD: a 2 GB synthetic expert sidecar streamed through a cache a quarter its size with direct I/O; disk bandwidth, MB read/token, tok/s vs the I/O limit and resident, LRU vs default-policy hit rates (MACH_BENCH_DIR: scratch directory)
	MACH_BENCH_STREAMING=full $(GO) test -run '^$$' -bench BenchmarkStreaming -benchtime 1x -timeout 30m ./pkg/expertstream/

# The default model (models/default) goes where the binaries look for it:
# PREFIX/share/mach/models/default, beside PREFIX/bin (pkg/defaultmodel).
MODEL_SRC   := models/default
MODEL_DEST  := $(DESTDIR)$(PREFIX)/share/mach/models/default

.PHONY: install
install: build ## install the binaries into $(PREFIX)/bin and the default model into $(PREFIX)/share/mach
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(addprefix $(BIN)/,$(CMDS)) $(DESTDIR)$(PREFIX)/bin/
	rm -rf '$(MODEL_DEST)'
	install -d '$(MODEL_DEST)/draft'
	install -m 0644 $(wildcard $(MODEL_SRC)/*.json $(MODEL_SRC)/*.safetensors $(MODEL_SRC)/*.md $(MODEL_SRC)/*.txt) '$(MODEL_DEST)/'
	install -m 0644 $(wildcard $(MODEL_SRC)/draft/*) '$(MODEL_DEST)/draft/'

.PHONY: fixtures
fixtures: ## fetch test fixtures that are not committed (tokenizers)
	@# One step per line; each step is idempotent and fails loudly.
	tools/fixtures/tokenizers.sh

# Two greedy generations with the default model (no MODEL given): a ChatML
# question and a code prompt, 64 tokens each; a few seconds on 2 cores.
.PHONY: demo
demo: build ## build and run the main job: generate with the default model
	$(BIN)/mach-generate --verbose --chat --prompt 'What does the json module do?' --temperature 0 --max-tokens 64
	$(BIN)/mach-generate --verbose --prompt $$'def fib(n):\n' --temperature 0 --max-tokens 64

.PHONY: release-check
release-check: ## install goreleaser into .tools/ and validate .goreleaser.yaml
	@test -x $(TOOLS)/goreleaser || GOBIN=$(TOOLS) $(GO) install github.com/goreleaser/goreleaser/v2@v2.15.1
	$(TOOLS)/goreleaser check

.PHONY: clean
clean: ## remove build outputs
	rm -rf $(BIN) dist
