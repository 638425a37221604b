"""/v1/embeddings of a running `infer serve` with all-MiniLM-L6-v2, through
the official `openai` client: the 12 reference sentences in one request
must match sentence-transformers' vectors (cosine >= 0.999, the F16 GGUF's
bound) and token counts; base64 equals float; errors are 400s.

Usage: embeddings_client.py BASE_URL REFERENCE_JSON
"""
import base64
import json
import struct
import sys

import openai

BASE, REF = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=BASE + "/v1", api_key="none", max_retries=0, timeout=300)
ref = json.load(open(REF))["sentences"]
texts = [s["text"] for s in ref]


def cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb)


r = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
assert r.object == "list" and len(r.data) == len(texts), r
worst = 1.0
for i, (d, s) in enumerate(zip(r.data, ref)):
    assert d.index == i and d.object == "embedding" and len(d.embedding) == 384, (i, d.index, len(d.embedding))
    c = cos(d.embedding, s["embedding"])
    worst = min(worst, c)
    assert c >= 0.999, f"sentence {i}: cosine {c} with sentence-transformers"
    norm = sum(x * x for x in d.embedding) ** 0.5
    assert abs(norm - 1.0) < 1e-4, norm
want_tokens = sum(s["n_tokens"] for s in ref)
assert r.usage.prompt_tokens == want_tokens and r.usage.total_tokens == want_tokens, (r.usage, want_tokens)
print(f"12 sentences: worst cosine {worst:.7f}, {r.usage.prompt_tokens} tokens")

# One string; base64 is the same vector as little-endian f32.
one = client.embeddings.create(model="x", input=texts[0]).data[0].embedding
b64 = client.embeddings.create(model="x", input=texts[0], encoding_format="base64").data[0].embedding
if isinstance(b64, str):
    raw = base64.b64decode(b64)
    b64 = list(struct.unpack(f"<{len(raw) // 4}f", raw))
assert len(b64) == 384 and max(abs(a - b) for a, b in zip(one, b64)) < 1e-6, "base64 differs from float"
# The vector of a text does not depend on what it is batched with.
assert max(abs(a - b) for a, b in zip(one, r.data[0].embedding)) < 1e-5

for body, param in [({"input": []}, "input"), ({"input": "a", "encoding_format": "hex"}, "encoding_format"),
                    ({"input": [[101, 102]]}, "input"), ({"input": "a", "dimensions": 7}, "dimensions"), ({}, "input")]:
    try:
        client.post("/embeddings", body=body, cast_to=object)
    except openai.BadRequestError as e:
        err = e.body if isinstance(e.body, dict) else {}
        err = err.get("error", err)
        assert err.get("param") == param, (body, err)
    else:
        raise AssertionError(f"{body} was accepted")
print("embeddings OK")
