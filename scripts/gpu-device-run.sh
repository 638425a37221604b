#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (docs/OFFLOAD.md, "Real GPU").
# That machine has no Rust toolchain and no network, and the real models
# exceed what travels with the working tree, so:
#
#   here:   cargo build --release -p infer-cli
#           fetch the Vulkan loader packages into .gl/ (the device tool's README)
#   there:  bash scripts/gpu-device-run.sh     (carry: .gl, target/release/infer)
#
# It unpacks the loader, records the GPU (nvidia-smi, `infer devices
# --bandwidth`), writes synthetic models of SmolLM2 135M's shape (Q4_1, as
# the real file's matrices) and of the 1B and 8B shapes (Q4_0), and sweeps
# the offload ratio on each (`infer bench --offload-sweep --gpu-profile
# --json --plot`: per ratio, the host's recording/encoding/waiting time per
# token and each kernel's GPU time and weight bandwidth).
# Everything lands in $OUT (default /tmp/infer-gpu-out): one JSON and one
# SVG per model, devices.json, nvidia-smi.csv, log.txt.
#
# Then, with every layer on the GPU, decode again with each step submitted
# in parts of PARTS dispatches without waiting (INFER_GPU_SUBMIT_EVERY), to
# see whether overlapping the host's encoding with the GPU pays, and with
# the integer-dot matvec forced off and on (INFER_GPU_INT_DOT=0|1; the
# default follows llama.cpp's per-vendor rule), to check that rule here.
#
# Knobs (environment): MODELS (default "135m:q4_1 1b:q4_0 1b:q4_k 8b:q4_0 8b:q4_k"),
# SWEEP (0,0.25,0.5,0.75,1), P (512), N (128), R (3), PARTS (64), INFER_BIN.
# Also runs here on lavapipe with small settings, e.g.
#   MODELS=135m:q4_1 SWEEP=0,1 P=16 N=8 R=1 bash scripts/gpu-device-run.sh
set -uo pipefail

OUT=${OUT:-/tmp/infer-gpu-out}
BIN=${INFER_BIN:-target/release/infer}
MODELS=${MODELS:-135m:q4_1 1b:q4_0 1b:q4_k 8b:q4_0 8b:q4_k}
SWEEP=${SWEEP:-0,0.25,0.5,0.75,1}
P=${P:-512}
N=${N:-128}
R=${R:-3}
PARTS=${PARTS:-64}
WORK=${WORK:-/tmp/infer-gpu-models}
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/log.txt") 2>&1

if [ ! -x "$BIN" ]; then
    echo "error: $BIN not found; build it here and carry target/release/infer" >&2
    exit 1
fi
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
# The NVIDIA driver's Vulkan ICD sits outside the loader's default search path there.
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if ! "$BIN" devices | grep -q '^\*' && [ -f "$nv_icd" ]; then
    export VK_DRIVER_FILES=$nv_icd
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory,driver_version --format=csv >"$OUT/nvidia-smi.csv" 2>&1 || true
"$BIN" devices
"$BIN" devices --bandwidth --json >"$OUT/devices.json" || echo "warning: no bandwidth figure"
cat "$OUT/devices.json"

status=0
for spec in $MODELS; do
    preset=${spec%%:*}
    ty=${spec#*:}
    model=$WORK/synth-$preset-$ty.gguf
    [ -f "$model" ] || "$BIN" synth --preset "$preset" --type "$ty" -o "$model" || { status=1; continue; }
    echo "== $preset $ty: sweep $SWEEP, pp$P tg$N, $R repetitions"
    if "$BIN" bench -m "$model" -p "$P" -n "$N" -r "$R" --offload-sweep "$SWEEP" --gpu-profile --json \
        --plot "$OUT/sweep-$preset-$ty.svg" >"$OUT/sweep-$preset-$ty.json"; then
        cat "$OUT/sweep-$preset-$ty.json"
    else
        status=1
    fi
    echo "== $preset $ty: all layers, steps submitted in parts of $PARTS dispatches"
    INFER_GPU_SUBMIT_EVERY=$PARTS "$BIN" bench -m "$model" -ngl all -p 0 -n "$N" -r "$R" --json \
        >"$OUT/parts-$preset-$ty.json" && cat "$OUT/parts-$preset-$ty.json" || status=1
    for dot in 0 1; do
        echo "== $preset $ty: all layers, INFER_GPU_INT_DOT=$dot"
        INFER_GPU_INT_DOT=$dot "$BIN" bench -m "$model" -ngl all -p 0 -n "$N" -r "$R" --gpu-profile --json \
            >"$OUT/intdot$dot-$preset-$ty.json" && cat "$OUT/intdot$dot-$preset-$ty.json" || status=1
    done
done
# Decode with every layer on the GPU against the measured copy bandwidth.
if command -v python3 >/dev/null; then
    python3 - "$OUT" <<'PY'
import glob, json, sys
out = sys.argv[1]
bw = json.load(open(f"{out}/devices.json")).get("copy_bandwidth_gb_s") or 0
for f in sorted(glob.glob(f"{out}/sweep-*.json")):
    for r in json.load(open(f)):
        if r["gpu_layers"] == r["total_layers"] and r.get("tg_tok_s"):
            gbs = r["gpu_weight_bytes"] * r["tg_tok_s"] / 1e9
            share = f"{100 * gbs / bw:.0f}% of {bw:.0f} GB/s copy" if bw else "no bandwidth figure"
            print(f"{f}: all layers: tg {r['tg_tok_s']:.1f} tok/s x {r['gpu_weight_bytes'] / 1e9:.2f} GB = {gbs:.0f} GB/s ({share})")
for f in sorted(glob.glob(f"{out}/parts-*.json")):
    r = json.load(open(f))[0]
    print(f"{f}: all layers, submitted in parts: tg {r['tok_s']:.1f} tok/s, {r['gpu']['submits_per_token']:.0f} submits per token")
for f in sorted(glob.glob(f"{out}/intdot*.json")):
    r = json.load(open(f))[0]
    print(f"{f}: all layers: tg {r['tok_s']:.1f} tok/s")
PY
fi
exit $status
