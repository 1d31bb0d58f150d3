#!/usr/bin/env bash
# The shipped Linux addons: a release build linked by zig, written into the platform package
# npm/<platform>/. The default is linux-x64-gnu against glibc 2.17 (CentOS 7 / RHEL 7 and everything
# newer), what `npm test` builds and checks; the release workflow also passes
# aarch64-unknown-linux-gnu.2.17, x86_64-unknown-linux-musl and aarch64-unknown-linux-musl (their
# rustup targets must be installed first).
#
#   scripts/build-release.sh [target]
#
# zig and cargo-zigbuild come from PyPI into a venv under .cache/ (git-ignored), installed on first use;
# nothing else is downloaded. `npm run build` stays the quick development build (host glibc).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so that every machine links the same way; bump together and rerun `npm test`.
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
# The suffix is cargo-zigbuild's glibc version for the triple, not another rustup target.
TARGET=${1:-x86_64-unknown-linux-gnu.2.17}
case "$TARGET" in
  x86_64-unknown-linux-gnu*) OUT_DIR=npm/linux-x64-gnu ;;
  aarch64-unknown-linux-gnu*) OUT_DIR=npm/linux-arm64-gnu ;;
  x86_64-unknown-linux-musl) OUT_DIR=npm/linux-x64-musl ;;
  aarch64-unknown-linux-musl) OUT_DIR=npm/linux-arm64-musl ;;
  *) echo "build-release: no zig build for $TARGET (darwin and win32 build natively: see release.yml)" >&2; exit 2 ;;
esac
# Rust's musl targets link the C runtime statically by default; an addon must share the musl that
# Node itself loaded.
case "$TARGET" in
  *-musl) export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=-crt-static" ;;
esac
TOOLS=.cache/release-tools

tools_ready() {
  [ -x "$TOOLS/bin/cargo-zigbuild" ] &&
    "$TOOLS/bin/cargo-zigbuild" --version 2>/dev/null | grep -qx "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" &&
    [ "$("$TOOLS/bin/python3" -m ziglang version 2>/dev/null)" = "$ZIGLANG_VERSION" ]
}

if ! tools_ready; then
  echo "build-release: installing ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION into $TOOLS" >&2
  rm -rf "$TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/python3" -m pip install --quiet --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  tools_ready || { echo "build-release: $TOOLS is not usable after pip install" >&2; exit 1; }
fi

# The venv first on PATH: cargo-zigbuild finds zig through its python3 (`python3 -m ziglang`), and the
# napi CLI finds `cargo zigbuild` instead of trying `cargo install`.
export PATH="$PWD/$TOOLS/bin:$PATH"
# A target directory of its own: zig's compiler settings would otherwise invalidate the build
# scripts and proc-macros that `npm run build` shares, and each build would redo the other's work.
export CARGO_TARGET_DIR="$PWD/target/zig"
node_modules/.bin/napi build --platform --release --no-js --cross-compile --target "$TARGET" --output-dir "$OUT_DIR"

ls -l "$OUT_DIR"/*.node >&2
