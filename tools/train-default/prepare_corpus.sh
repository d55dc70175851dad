#!/usr/bin/env bash
# Build .device/corpus/ (git-ignored): the training corpus of mach's default model, from the
# reStructuredText sources of the Python 3.11 documentation in the Debian package python3.11-doc.
#
# Usage: tools/train-default/prepare_corpus.sh [--force]
#
# Runs on a Debian machine with apt (no root needed beyond what `apt-get download` needs, nothing
# is installed: the .deb is unpacked with dpkg-deb -x into a temporary folder) and python3 (stdlib
# only). Idempotent: the .deb is cached in .device/cache/ and the corpus is rebuilt only when the
# .deb or the scripts changed (or with --force); a rebuild from the same inputs writes the same
# bytes. Environment: PYDOC_VERSION=3.11.2-6+deb12u9 pins the package version; PYTHON picks the
# interpreter.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/.device/corpus"
cache="$root/.device/cache"
pkg="python3.11-doc"
py="${PYTHON:-python3}"
force=0
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "prepare_corpus: unknown argument $a (try --help)" >&2; exit 2 ;;
  esac
done

command -v dpkg-deb >/dev/null || { echo "prepare_corpus: dpkg-deb not found (needs Debian/Ubuntu)" >&2; exit 1; }
command -v "$py" >/dev/null || { echo "prepare_corpus: $py not found (set PYTHON)" >&2; exit 1; }
mkdir -p "$cache"

# 1. The package, cached. A pinned version is fetched if the cache lacks it.
want="${PYDOC_VERSION:-}"
deb=""
if [ -n "$want" ]; then
  deb="$(ls "$cache"/${pkg}_"${want//:/%3a}"_all.deb 2>/dev/null | head -1 || true)"
else
  deb="$(ls "$cache"/${pkg}_*_all.deb 2>/dev/null | sort -V | tail -1 || true)"
fi
if [ -z "$deb" ]; then
  echo "== apt-get download $pkg${want:+=$want}"
  # apt-get download writes into the current directory; _apt cannot write to root-owned
  # folders, which only costs a warning.
  if ! (cd "$cache" && apt-get download "$pkg${want:+=$want}"); then
    echo "prepare_corpus: apt-get download $pkg failed; run 'apt-get update' first" >&2
    exit 1
  fi
  deb="$(ls "$cache"/${pkg}_*_all.deb | sort -V | tail -1)"
fi
version="$(dpkg-deb -f "$deb" Version)"
deb_sha="$(sha256sum "$deb" | cut -d' ' -f1)"
scripts_sha="$(cat "$here/prepare_corpus.sh" "$here/prepare_corpus.py" | sha256sum | cut -d' ' -f1)"
stamp="$deb_sha $scripts_sha"
echo "== $pkg $version ($(basename "$deb"), sha256 $deb_sha)"

# 2. Up to date? The stamp is written only after a complete build.
if [ "$force" = 0 ] && [ -f "$out/manifest.json" ] && [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ]; then
  echo "== $out is up to date (same package and scripts; --force rebuilds)"
  exit 0
fi

# 3. Unpack into a temporary folder and build into a fresh folder next to the old one, then swap,
# so an interrupted run never leaves a half-written corpus that looks complete.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp" "$out.new"' EXIT
dpkg-deb -x "$deb" "$tmp/x"
src="$tmp/x/usr/share/doc/python3.11/html/_sources"
copyright="$tmp/x/usr/share/doc/$pkg/copyright"
[ -d "$src" ] || { echo "prepare_corpus: $src missing in $(basename "$deb")" >&2; exit 1; }
[ -f "$copyright" ] || { echo "prepare_corpus: $copyright missing in $(basename "$deb")" >&2; exit 1; }

rm -rf "$out.new"
"$py" "$here/prepare_corpus.py" --src "$src" --copyright "$copyright" --deb "$deb" \
  --version "$version" --out "$out.new"
echo "$stamp" > "$out.new/.stamp"
rm -rf "$out.old"
if [ -d "$out" ]; then mv "$out" "$out.old"; fi
mv "$out.new" "$out"
rm -rf "$out.old"
echo "== wrote $out:"
ls -l "$out"
