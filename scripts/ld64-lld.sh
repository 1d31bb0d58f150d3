#!/bin/sh
# rustc's linker for the darwin targets (scripts/build-release.sh). napi-build hands the cc driver
# `-Wl -undefined dynamic_lookup` as three arguments; ld64.lld takes the last two and rejects the
# lone `-Wl`, so it is dropped.
for arg; do
  shift
  [ "$arg" = "-Wl" ] || set -- "$@" "$arg"
done
exec ld64.lld-14 "$@"
