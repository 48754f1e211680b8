#!/usr/bin/env bash
# npm test: every test of samepage, and one last line "N passed, N failed" counting them all.
#   scripts/test.sh [core] [fuzz] [js] [kernel]     (default: all four)
#  core    C core tests under ctest, in the release and the ASan+UBSan builds
#  fuzz    each libFuzzer target for SAMEPAGE_FUZZ_SECONDS (default 30) from its seed corpus
#  js      the TypeScript library, agent and harness tests (ava, compiled first)
#  kernel  the Linux 6.12 patch series: build, boot under QEMU, checks (npm run test:kernel)
# Must run as root on a host with KSM: the tests use the real /sys/kernel/mm/ksm (saving and
# restoring every setting) and boot QEMU guests.
set -uo pipefail
cd "$(dirname "$0")/.."
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(core fuzz js kernel)
logdir=$(mktemp -d /tmp/samepage-test.XXXXXX)
passed=0
failed=0
summary=()

count() { # stage name, passed, failed
  passed=$((passed + $2))
  failed=$((failed + $3))
  summary+=("$(printf '%-14s %5d passed %5d failed' "$1" "$2" "$3")")
}

# ctest in one build: each test executable prints "N passed, N failed"; one that died before
# printing it counts as one failure.
run_ctest() {
  local build=$1 log="$logdir/ctest-$1.log"
  echo "== ctest ($build)"
  (cd "$build" && ctest -V --timeout 900) >"$log" 2>&1
  local rc=$?
  grep -E '^[0-9]+: (ok|not ok) ' "$log" | sed -E 's/^[0-9]+: /  /'
  local p f dead
  p=$(grep -E '^[0-9]+: [0-9]+ passed, [0-9]+ failed$' "$log" | awk '{s+=$2} END {print s+0}')
  f=$(grep -E '^[0-9]+: [0-9]+ passed, [0-9]+ failed$' "$log" | awk '{s+=$4} END {print s+0}')
  dead=$(grep -cE 'Failed|\*\*\*Exception|Timeout' <(grep -E '^ *[0-9]+/[0-9]+ Test +#' "$log") || true)
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=$((dead > 0 ? dead : 1)); fi
  [ "$rc" -ne 0 ] && tail -40 "$log"
  count "ctest $build" "$p" "$f"
}

for stage in "${stages[@]}"; do
  case $stage in
    core)
      if bash scripts/build-core.sh release asan >"$logdir/build-core.log" 2>&1; then
        run_ctest build-release
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 run_ctest build-asan
      else
        tail -40 "$logdir/build-core.log"
        count "core build" 0 1
      fi ;;
    fuzz)
      secs=${SAMEPAGE_FUZZ_SECONDS:-30}
      if bash scripts/build-core.sh fuzz >"$logdir/build-fuzz.log" 2>&1; then
        for target in smaps elf; do
          corpus=$(mktemp -d)
          if ./build-fuzz/fuzz_$target -max_total_time="$secs" -print_final_stats=1 "$corpus" \
              native/core/fuzz/corpus/$target >"$logdir/fuzz-$target.log" 2>&1; then
            echo "ok fuzz_$target ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logdir/fuzz-$target.log" | grep -o '[0-9]*$') runs in ${secs}s)"
            count "fuzz $target" 1 0
          else
            echo "FAIL fuzz_$target"; tail -30 "$logdir/fuzz-$target.log"
            count "fuzz $target" 0 1
          fi
          rm -rf "$corpus"
        done
      else
        tail -20 "$logdir/build-fuzz.log"
        count "fuzz build" 0 1
      fi ;;
    js)
      echo "== ava"
      # The main tsconfig, then the status page's browser code (its own DOM-typed tsconfig).
      if ! { npx tsc -p tsconfig.json && npx tsc -p lib/agent/web/client/tsconfig.json; } >"$logdir/tsc.log" 2>&1; then
        cat "$logdir/tsc.log"
        count "typescript" 0 1
        continue
      fi
      npx ava --tap >"$logdir/ava.tap" 2>&1
      rc=$?
      grep -E '^(not )?ok ' "$logdir/ava.tap"
      p=$(awk '/^# pass/ {print $3}' "$logdir/ava.tap")
      f=$(awk '/^# fail/ {print $3}' "$logdir/ava.tap")
      p=${p:-0}
      f=${f:-0}
      if [ "$rc" -ne 0 ]; then
        grep -vE '^ok ' "$logdir/ava.tap" | tail -80
        [ "$f" -eq 0 ] && f=1
      fi
      count "ava" "$p" "$f" ;;
    kernel)
      echo "== test:kernel"
      bash scripts/kernel/test-kernel.sh >"$logdir/kernel.log" 2>&1
      rc=$?
      line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$logdir/kernel.log" | tail -1)
      grep -vE '^\[test:kernel' "$logdir/kernel.log" | tail -30
      p=$(echo "$line" | awk '{print $1+0}')
      f=$(echo "$line" | awk '{print $3+0}')
      [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && f=1
      count "kernel" "${p:-0}" "${f:-0}" ;;
    *) echo "unknown stage '$stage' (core, fuzz, js, kernel)"; count "$stage" 0 1 ;;
  esac
done

echo
echo "logs: $logdir"
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
