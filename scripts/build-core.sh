#!/usr/bin/env bash
# Builds the C core, its tests and the benchmark: a release build (build-release/) and an
# ASan+UBSan build (build-asan/); with clang, the libFuzzer targets too (build-fuzz/).
#   scripts/build-core.sh [release|asan|fuzz]...   (default: release asan)
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
want=("$@")
[ ${#want[@]} -eq 0 ] && want=(release asan)
for kind in "${want[@]}"; do
  case $kind in
    release) cmake -S . -B build-release "${generator[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null ;;
    asan) cmake -S . -B build-asan "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=ON >/dev/null ;;
    fuzz)
      if ! command -v clang-14 >/dev/null; then
        echo "build-core: clang-14 is needed for the fuzzers: apt-get install clang-14 libclang-rt-14-dev" >&2
        exit 1
      fi
      CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSP_FUZZ=ON -DSP_SANITIZE=ON >/dev/null ;;
    *) echo "build-core: unknown build '$kind' (release, asan or fuzz)" >&2; exit 2 ;;
  esac
  cmake --build "build-$kind" -j "$(nproc)"
done
