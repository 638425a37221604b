#!/usr/bin/env bash
# Cross-checks the NEON kernels on an x86-64 Debian machine: builds the
# kernel tests for aarch64 and runs them under qemu-user (every instruction
# set against the scalar references on random and real blocks), then builds
# the `infer` binary for aarch64. Needs the rustup target and, once, apt.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi
rustup target add aarch64-unknown-linux-gnu

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target-arm}"
cargo test --release --target aarch64-unknown-linux-gnu -p infer-kernels \
  --test cpu_matmul --test cpu_multi --test cpu_packed --test dequant_vectors
cargo build --release --target aarch64-unknown-linux-gnu -p infer-cli
