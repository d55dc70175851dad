#!/usr/bin/env bash
# Runs every reference generator on a machine with PyTorch, transformers and
# tokenizers (the GPU box; no network needed) and packs the results into
# OUTDIR as at most 15 MB parts:
#
#   tools/refgen/run_all.sh OUTDIR [models|tokenizers|chat|bench ...]
#
# Inputs that are not committed travel in .device/ (git-ignored):
#   .device/tokenizers.tar.gz   testdata/cache/tokenizers/<name>/{tokenizer.json,tokenizer_config.json}
#   .device/bin/tokenizer.test  Go tokenizer benchmark binary (GOOS=linux GOARCH=amd64 go test -c)
#
# Unpack the result here with: cat OUTDIR/refgen.tar.gz.part-* | tar xz
set -u
OUT=${1:?usage: run_all.sh OUTDIR [steps...]}
shift
steps=${*:-models tokenizers chat bench}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/refgen.XXXXXX)
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1
cd "$root"

{
  date -u
  python3 -c 'import sys, torch, transformers, tokenizers; print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__)'
  nvidia-smi -L 2>/dev/null || true
  nproc
} 2>&1 | tee "$work/env.log"

if [ -f .device/tokenizers.tar.gz ]; then
  tar xzf .device/tokenizers.tar.gz
fi
if [ -f .device/bin/tokenizer.test.gz ]; then
  gunzip -kf .device/bin/tokenizer.test.gz && chmod +x .device/bin/tokenizer.test
fi

status=0
for step in $steps; do
  echo "=== $step"
  case $step in
    models)
      python3 -P tools/refgen/models.py --out "$work" 2>&1 | tee "$work/models.log" || status=1 ;;
    tokenizers)
      if [ -f tools/refgen/tokenizers.py ]; then
        mkdir -p "$work/testdata/tokenizers"
        python3 -P tools/refgen/tokenizers.py --src testdata/cache/tokenizers --corpus testdata/tokenizers/corpus.jsonl \
          --out "$work/testdata/tokenizers" 2>&1 | tee "$work/tokenizers.log" || status=1
        python3 -P tools/refgen/tokenizers.py --src testdata/cache/tokenizers --corpus testdata/tokenizers/corpus.jsonl \
          --out "$work/bench" --bench 2>&1 | tee "$work/tokenizers-bench.log" || status=1
      else
        echo "tools/refgen/tokenizers.py missing; skipped"
      fi ;;
    chat)
      if [ -f tools/refgen/chat.py ]; then
        mkdir -p "$work/testdata/chat"
        python3 -P tools/refgen/chat.py --src testdata/cache/tokenizers --conversations testdata/chat/conversations.jsonl \
          --out "$work/testdata/chat" 2>&1 | tee "$work/chat.log" || status=1
      else
        echo "tools/refgen/chat.py missing; skipped"
      fi ;;
    bench)
      if [ -x .device/bin/tokenizer.test ]; then
        (cd pkg/tokenizer && MACH_HF_BENCH_JSON="$work/bench/bench.json" "$root/.device/bin/tokenizer.test" \
          -test.run '^$' -test.bench 'Encode|Load' -test.benchtime 3x -test.cpu 1) 2>&1 | tee "$work/go-tokenizer-bench.log"
      else
        echo "no Go tokenizer benchmark binary; skipped"
      fi ;;
    *) echo "unknown step $step"; status=2 ;;
  esac
done

(cd "$work" && tar czf "$OUT/refgen.tar.gz" --exclude=bench .)
(cd "$OUT" && split -b 15m -d refgen.tar.gz refgen.tar.gz.part- && rm refgen.tar.gz)
cat "$work"/*.log > "$OUT/run.log" 2>/dev/null
ls -la "$OUT"
exit $status
