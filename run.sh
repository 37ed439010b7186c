#!/usr/bin/env bash
# surgft in one command: install the missing Debian packages, build, then run.
#
#   ./run.sh                  build (build/, release) and run the main experiment
#   ./run.sh run SCRIPT ARGS  build and run a Lua script with surgft-lua
#   ./run.sh test             build and run the whole test suite (meson test)
#   ./run.sh asan             sanitizer build (build-asan/: ASan + UBSan) and the whole suite
#   ./run.sh build            install and build only
#
# Packages are installed only when one is missing (apt-get; as root, or through sudo).
# Set SURGFT_NO_APT=1 to skip the package step entirely.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"

# What the build, the tests and the experiments need (see DESIGN.md). python3-torch is
# only for the benchmarks' PyTorch side and is not installed here.
PACKAGES=(build-essential pkg-config meson ninja-build liblua5.4-dev lua5.4 libopenblas-dev
          libpng-dev zlib1g-dev libjpeg62-turbo-dev lua-unit lua-cjson gnuplot-nox
          dataset-fashion-mnist)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

install_missing() {
  [[ ${SURGFT_NO_APT:-0} == 1 ]] && return 0
  if ! command -v dpkg-query >/dev/null 2>&1; then
    say "not a Debian system: skipping package installation (need: ${PACKAGES[*]})"
    return 0
  fi
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || die "missing packages (${missing[*]}) and not root, no sudo"
    sudo=(sudo)
  fi
  say "installing: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# configure (or re-apply the options of) a build directory, then compile it
build() {
  local dir=$1
  shift
  if [[ -f $dir/meson-private/coredata.dat ]]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null || meson setup --wipe "$dir" "$@"
  else
    meson setup "$dir" "$@"
  fi
  ninja -C "$dir"
}

# LeakSanitizer suppressions for leaks in third-party libraries, if any are ever needed
# (none today: OpenBLAS's thread pool stays reachable). The file must exist to be named.
sanitizer_env() {
  if [[ -f $ROOT/tests/lsan.supp ]]; then
    export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
  fi
}

# meson test, and on failure the failing TAP lines with their diagnostics (meson's
# --print-errorlogs shows a TAP test's stderr only)
run_tests() {
  local dir=$1
  shift
  meson test -C "$dir" --print-errorlogs "$@" && return 0
  say "failing tests ($dir/meson-logs/testlog.txt):"
  grep -A8 '^not ok' "$dir/meson-logs/testlog.txt" >&2 || true
  return 1
}

main_experiment() {
  local e
  for e in experiments/camelyon_embed.lua experiments/demo.lua; do
    [[ -f $e ]] && { echo "$e"; return; }
  done
  die "no experiment script found under experiments/"
}

mode=${1:-run}
(($#)) && shift
case $mode in
  run)
    install_missing
    build build --buildtype=release
    if (($#)); then script=$1; shift; else script=$(main_experiment); fi
    say "running $script"
    exec build/surgft-lua "$script" "$@"
    ;;
  build)
    install_missing
    build build --buildtype=release
    ;;
  test)
    install_missing
    build build --buildtype=release
    run_tests build "$@"
    ;;
  asan)
    install_missing
    # debugoptimized: -O2 keeps the suite fast; asserts stay on (b_ndebug=if-release)
    build build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false
    sanitizer_env
    run_tests build-asan --timeout-multiplier 3 "$@"
    ;;
  -h | --help | help)
    sed -n '2,11s/^# \{0,1\}//p' "$0"
    ;;
  *)
    die "unknown command '$mode' (run, test, asan, build)"
    ;;
esac
