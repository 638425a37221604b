#!/usr/bin/env bash
# Regenerates capi/include/infer.h from capi/src/lib.rs with cbindgen
# (installed on first use). The header is checked in; tests/capi.rs compiles
# and runs a C program against it and the static library.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cbindgen >/dev/null || cargo install cbindgen --locked
cbindgen --config capi/cbindgen.toml --crate infer-capi --output capi/include/infer.h capi
echo "wrote capi/include/infer.h"
