#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for SECONDS each
# (default 60) with the nightly toolchain, installing cargo-fuzz if missing.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Seeds come from fuzz/corpus/TARGET/ (written by the write_corpus example);
# what libFuzzer finds goes to fuzz/work/TARGET/, crashes to
# fuzz/artifacts/TARGET/. A crash becomes a regression input: copy it into
# fuzz/corpus/TARGET/ (the bounded test tests/fuzz.rs runs that folder) and
# add a named test next to the code it is about.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "error: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz ..."
  cargo install cargo-fuzz
fi
scripts/fetch-models.sh
cargo run --release -q -p infer-fuzz-targets --example write_corpus
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi
# Optimised, with debug assertions (-a) so an integer overflow is a crash.
# Models load once per process, so each target is one run.
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t"
  echo "== $t for ${secs}s"
  if ! (cd fuzz && cargo +nightly fuzz run -a "$t" "work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -max_len=1048576 -print_final_stats=1); then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "no crashes in ${targets[*]}"
