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

# The server's end-to-end tests drive `infer serve` with the official
# `openai` Python client from a virtual environment in .venv/ (git-ignored).
if ! .venv/bin/python -c "import openai" >/dev/null 2>&1; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
  fi
  echo "creating .venv with the openai client ..."
  python3 -m venv .venv
  .venv/bin/pip install --quiet openai
fi
# The structured-output suite validates replies with jsonschema.
if ! .venv/bin/python -c "import jsonschema" >/dev/null 2>&1; then
  .venv/bin/pip install --quiet jsonschema
fi
# The Python package's tests run under pytest.
if ! .venv/bin/python -c "import pytest" >/dev/null 2>&1; then
  .venv/bin/pip install --quiet pytest
fi
# The chat page test drives headless Chromium over the DevTools protocol.
if ! .venv/bin/python -c "import websocket" >/dev/null 2>&1; then
  .venv/bin/pip install --quiet websocket-client
fi
if ! command -v chromium >/dev/null; then
  echo "installing chromium (the chat page test) ..."
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
# ... and curl for the raw SSE framing.
if ! command -v curl >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y curl
fi
cargo build --release --workspace
cargo test --release --workspace --no-fail-fast
