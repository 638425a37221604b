#!/usr/bin/env bash
# Checks the dependencies against deny.toml with cargo-deny (installed on
# first use): advisories (RustSec), licenses, bans and sources. The advisory
# database is fetched from GitHub; with `--offline` the copy already in
# ~/.cargo/advisory-dbs is used.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
cargo deny ${1:+"$1"} check
