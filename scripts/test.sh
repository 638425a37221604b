#!/usr/bin/env bash
# Builds and tests the whole workspace on a fresh Debian machine (run as root
# there; elsewhere the apt step is skipped when lavapipe is already present).
# GPU tests run on lavapipe, Mesa's software Vulkan driver, when no GPU exists.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  echo "installing mesa-vulkan-drivers (lavapipe) ..."
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y mesa-vulkan-drivers
fi

scripts/fetch-models.sh
cargo build --release --workspace
cargo test --release --workspace
