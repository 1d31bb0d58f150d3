#!/usr/bin/env bash
# The shipped addons, release builds written into the platform packages npm/<platform>/, all made on
# this Linux x64 machine. The default is linux-x64-gnu against glibc 2.17 (CentOS 7 / RHEL 7 and
# everything newer), what `npm test` builds and checks; `npm run build:all` (scripts/build-all.sh)
# passes every other target.
#
#   scripts/build-release.sh [target]
#
#   Linux, glibc and musl   cargo-zigbuild links against glibc 2.17 / the target's musl.
#   macOS                   rustc links with ld64.lld (Debian's lld-14) against a libSystem stub
#                           made from zig's: zig's own Mach-O linker ignores rustc's export list and
#                           would export every Rust symbol (~9,000, 4 MB).
#   Windows                 x86_64-pc-windows-gnu through cargo-zigbuild, napi's symbols resolved
#                           from the running node.exe (napi/dyn-symbols): -msvc needs Microsoft's
#                           CRT and SDK, which no registry here serves.
#
# zig and cargo-zigbuild come from PyPI into a venv under .cache/ (git-ignored), installed on first
# use; the rustup target is added when missing; lld-14 comes from apt. `npm run build` stays the
# quick development build (host glibc).
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
  # The oldest macOS each addon loads on (minos): rustc and the linker read MACOSX_DEPLOYMENT_TARGET.
  x86_64-apple-darwin) OUT_DIR=npm/darwin-x64 DEPLOYMENT_TARGET=10.13 ;;
  aarch64-apple-darwin) OUT_DIR=npm/darwin-arm64 DEPLOYMENT_TARGET=11.0 ;;
  x86_64-pc-windows-gnu) OUT_DIR=npm/win32-x64-gnu ;;
  *) echo "build-release: no build for $TARGET" >&2; exit 2 ;;
esac
RUSTUP_TARGET=${TARGET%.2.17}
rustup target list --installed | grep -qx "$RUSTUP_TARGET" || rustup target add "$RUSTUP_TARGET"
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

# The venv first on PATH: cargo-zigbuild finds zig through its python3 (`python3 -m ziglang`).
export PATH="$PWD/$TOOLS/bin:$PATH"
# A target directory of its own: zig's compiler settings would otherwise invalidate the build
# scripts and proc-macros that `npm run build` shares, and each build would redo the other's work.
export CARGO_TARGET_DIR="$PWD/target/zig"

CARGO=(cargo-zigbuild rustc)
FEATURES=()
case "$TARGET" in
  *-apple-darwin)
    command -v ld64.lld-14 >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends lld-14; }
    # A two-file SDK: zig's libSystem.tbd, with the target names lld 14 parses (it rejects zig's
    # `arm64e.x1-*` and does not treat arm64e as arm64), and libc/libm as macOS has them: aliases.
    SDK=$PWD/.cache/darwin-sdk
    ZIG_TBD=$("$TOOLS/bin/python3" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "lib/libc/darwin/libSystem.tbd"))')
    mkdir -p "$SDK/usr/lib"
    "$TOOLS/bin/python3" - "$ZIG_TBD" "$SDK/usr/lib/libSystem.tbd" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def targets(match):
    items = [t.strip() for t in match.group(1).split(',') if t.strip() and '.x1-' not in t]
    for flavour in ('macos', 'maccatalyst'):
        if 'arm64e-' + flavour in items and 'arm64-' + flavour not in items:
            items.append('arm64-' + flavour)
    return '[ ' + ', '.join(items) + ' ]'
open(sys.argv[2], 'w').write(re.sub(r'\[([^\[\]]*-mac[^\[\]]*)\]', targets, text))
PY
    ln -sf libSystem.tbd "$SDK/usr/lib/libc.tbd"
    ln -sf libSystem.tbd "$SDK/usr/lib/libm.tbd"
    # The libc crate asks for -liconv on every Apple target; nothing here calls it, and
    # -dead_strip_dylibs (below) keeps an unused library out of the load commands.
    cat > "$SDK/usr/lib/libiconv.tbd" <<'TBD'
--- !tapi-tbd
tbd-version:     4
targets:         [ x86_64-macos, arm64-macos ]
install-name:    '/usr/lib/libiconv.2.dylib'
current-version: 7
compatibility-version: 7
exports:
  - targets:         [ x86_64-macos, arm64-macos ]
    symbols:         [ _iconv, _iconv_close, _iconv_open ]
...
TBD
    TRIPLE_VAR=$(echo "$TARGET" | tr 'a-z-' 'A-Z_')
    export SDKROOT="$SDK" MACOSX_DEPLOYMENT_TARGET="$DEPLOYMENT_TARGET"
    export "CARGO_TARGET_${TRIPLE_VAR}_LINKER=$PWD/scripts/ld64-lld.sh"
    # The install name otherwise records this machine's target/ path.
    export "CARGO_TARGET_${TRIPLE_VAR}_RUSTFLAGS=-C linker-flavor=ld64.lld -C link-arg=-dead_strip_dylibs -C link-arg=-install_name -C link-arg=@rpath/yc-metadata-token.node"
    CARGO=(cargo rustc)
    ;;
  x86_64-pc-windows-gnu)
    # napi-build's windows-gnu path links -lnode from a directory holding libnode.dll. With
    # dyn-symbols nothing is imported from it (napi_* are looked up in node.exe at load time), so
    # an empty import archive and an empty placeholder satisfy the build script and the linker.
    STUB=$PWD/.cache/libnode-stub
    mkdir -p "$STUB"
    printf '!<arch>\n' > "$STUB/libnode.a"
    : > "$STUB/libnode.dll"
    export LIBNODE_PATH="$STUB"
    # zig drops the export list rustc hands it and would export every Rust symbol (8,597).
    export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS="-C link-arg=$PWD/scripts/platforms/win32-exports.def"
    FEATURES=(--features napi/dyn-symbols)
    ;;
esac

# `rustc --crate-type cdylib` rather than `napi build` (a plain cargo build): Cargo.toml's crate
# types are cdylib and rlib, and with an rlib among them rustc does no LTO at all. Measured here:
# linux-x64-gnu 1.45 MB without, 1.15 MB with; windows-gnu, which also compiles without function
# sections (so the linker drops nothing), 2.48 MB without, 1.14 MB with.
"${CARGO[@]}" --release --lib --crate-type cdylib --target "$TARGET" "${FEATURES[@]}"
case "$TARGET" in
  *-apple-darwin) LIB=libyc_metadata_token.dylib ;;
  *-windows-*) LIB=yc_metadata_token.dll ;;
  *) LIB=libyc_metadata_token.so ;;
esac
cp "$CARGO_TARGET_DIR/$RUSTUP_TARGET/release/$LIB" "$OUT_DIR/yc-metadata-token.$(basename "$OUT_DIR").node"

ls -l "$OUT_DIR"/*.node >&2
