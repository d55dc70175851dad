#!/usr/bin/env bash
# Train mach's default model on a machine with one NVIDIA GPU and write the result to OUTDIR.
#
# Usage: tools/train-default/run.sh OUTDIR [train.py flags...]
#        tools/train-default/run.sh OUTDIR --smoke     # code-path check, ~25 s
#
# Needs: python3 with torch (CUDA), transformers 5.x, tokenizers, safetensors, numpy (no network),
# and .device/corpus/ from tools/train-default/prepare_corpus.sh (carried with the working tree).
# Takes about 5 minutes on one H100 or H200 (measured: 304 s on an H200; train.py stops itself
# after --deadline-s, default 500 s; this script kills it at TIME_LIMIT_S, default 560 s).
# OUTDIR receives at most 8 files, each under 15 MiB:
#   default-model.tar.gz.part-aa[, -ab...]   the package (cat the parts | tar xz: default/, reference/)
#   summary.json   every number of the run (written after each stage)
#   MODEL_CARD.md  a copy of default/MODEL_CARD.md
#   SHA256SUMS     of the tarball, its parts and every packaged file
#   train.log      this run's output
# While training, partial-default-model.tar.gz.part-* hold the best checkpoint so far; they are
# removed when the package is complete. Exit status: 0 when every stage is ok.
set -uo pipefail

if [ $# -lt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -ge 1 ] && exit 0 || exit 2
fi
out="$1"; shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
corpus="${CORPUS:-$root/.device/corpus}"
py="${PYTHON:-python3}"
limit="${TIME_LIMIT_S:-560}"

mkdir -p "$out"
log="$out/train.log"
: > "$log"
exec > >(tee -a "$log") 2>&1

echo "== run.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) in $root"
if [ ! -f "$corpus/manifest.json" ]; then
  echo "run.sh: $corpus/manifest.json not found: run tools/train-default/prepare_corpus.sh first" \
       "and carry .device/corpus with the working tree" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi: not available"
"$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())' \
  || { echo "run.sh: $py cannot import torch" >&2; exit 2; }

work="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/train-default.XXXXXX")}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       HF_HUB_DISABLE_TELEMETRY=1
start=$(date +%s)
timeout --signal=TERM --kill-after=20 "$limit" \
  "$py" "$here/train.py" --corpus "$corpus" --work "$work" --out "$out" "$@"
rc=$?
[ $rc -eq 124 ] && echo "run.sh: train.py was stopped after ${limit}s; partial results are in $out"
echo "== run.sh: exit $rc after $(( $(date +%s) - start ))s; $out holds:"
ls -l "$out"
exit $rc
