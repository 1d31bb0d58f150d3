#!/usr/bin/env bash
# Every platform package npm/<platform>/, built on this Linux x64 machine by build-release.sh, one
# target after another (each release build is one LTO codegen unit: running them side by side on
# two cores gains nothing). `npm run test:platforms` checks what this writes; the release workflow
# publishes it.
#
#   scripts/build-all.sh            (npm run build:all)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(
  x86_64-unknown-linux-gnu.2.17
  x86_64-unknown-linux-musl
  aarch64-unknown-linux-gnu.2.17
  aarch64-unknown-linux-musl
  x86_64-apple-darwin
  aarch64-apple-darwin
  x86_64-pc-windows-gnu
)
for target in "${TARGETS[@]}"; do
  started=$SECONDS
  scripts/build-release.sh "$target"
  echo "build-all: $target in $((SECONDS - started)) s" >&2
done
