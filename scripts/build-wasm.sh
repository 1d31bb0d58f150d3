#!/usr/bin/env bash
# The wasm driver's module: the Rust core alone, no_std, compiled for wasm32v1-none (WebAssembly 1.0:
# the features Node 14's V8 has; wasm32-unknown-unknown's prebuilt std uses newer ones that Node 14
# and 16 refuse), written to yc-metadata-token.wasm beside index.js. The rustup target is installed
# on first use. A panic there can only abort (a trap, which wasm-driver.js reports).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=wasm32v1-none
if ! rustup target list --installed | grep -qx "$TARGET"; then
  rustup target add "$TARGET"
fi
CARGO_PROFILE_RELEASE_PANIC=abort cargo build --release --lib --target "$TARGET"
cp "target/$TARGET/release/yc_metadata_token.wasm" yc-metadata-token.wasm
ls -l yc-metadata-token.wasm >&2
