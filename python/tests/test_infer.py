"""The Python package against the real models (run by tests/python.rs with
INFER_MODELS set to the models folder and the built package on sys.path)."""
import _thread
import json
import math
import os
import threading
import time

import jsonschema
import pytest

import infer

MODELS = os.environ["INFER_MODELS"]
DATA = os.environ["INFER_TEST_DATA"]
CHAT = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
MINILM = os.path.join(MODELS, "all-MiniLM-L6-v2.f16.gguf")
ASK = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name a primary color."}]


@pytest.fixture(scope="module")
def llm():
    return infer.Llama(model_path=CHAT, n_ctx=1024)


def test_chat_completion_has_openai_shape_and_streams_the_same(llm):
    r = llm.create_chat_completion(ASK, temperature=0, max_tokens=24)
    assert r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")
    choice = r["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    u = r["usage"]
    assert u["prompt_tokens"] > 0 and 0 < u["completion_tokens"] <= 24
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    chunks = list(llm.create_chat_completion(ASK, temperature=0, max_tokens=24, stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == choice["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]


def test_completion_max_tokens_stop_and_tokens(llm):
    r = llm.create_completion("The capital of France is", max_tokens=6, temperature=0)
    assert r["object"] == "text_completion" and r["choices"][0]["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 6
    text = r["choices"][0]["text"]
    cut = llm("The capital of France is", max_tokens=6, temperature=0, stop=[text[2:4]])
    assert cut["choices"][0]["text"] == text[:2] and cut["choices"][0]["finish_reason"] == "stop"
    ids = llm.tokenize(b"Hello, world! Caf\xc3\xa9.", add_bos=False)
    assert llm.detokenize(ids) == "Hello, world! Café.".encode()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        llm.detokenize([10**9])


def test_json_schema_output_validates(llm):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 30},
                                               "legs": {"type": "integer", "minimum": 0, "maximum": 8},
                                               "habitats": {"type": "array", "items": {"type": "string"}}},
              "required": ["name", "legs", "habitats"]}
    for t in (0, 0.8):
        r = llm.create_chat_completion([{"role": "user", "content": "Describe an animal as JSON."}], temperature=t, seed=3,
                                       max_tokens=200, response_format={"type": "json_schema",
                                                                        "json_schema": {"name": "animal", "schema": schema}})
        value = json.loads(r["choices"][0]["message"]["content"])
        jsonschema.validate(value, schema)
        assert set(value) <= set(schema["properties"]) and r["choices"][0]["finish_reason"] == "stop"
    r = llm.create_chat_completion([{"role": "user", "content": "A JSON object about a cat."}], temperature=0, max_tokens=120,
                                   response_format={"type": "json_object"})
    assert isinstance(json.loads(r["choices"][0]["message"]["content"]), dict)
    with pytest.raises(ValueError, match="response_format"):
        llm.create_chat_completion(ASK, response_format={"type": "json_schema", "json_schema": {"schema": {"type": "strng"}}})


def test_bad_input_is_a_clear_error(llm):
    with pytest.raises(ValueError, match="messages\\[0\\]"):
        llm.create_chat_completion([{"content": "no role"}])
    with pytest.raises(NotImplementedError, match="tools"):
        llm.create_chat_completion(ASK, tools=[{"type": "function", "function": {"name": "f"}}])
    with pytest.raises(ValueError, match="context"):
        llm.create_completion("word " * 2000, max_tokens=4)
    with pytest.raises(RuntimeError, match="no_such.gguf"):
        infer.Llama(os.path.join(MODELS, "no_such.gguf"))


def test_threads_share_one_model_and_the_gil_is_released(llm):
    want = llm.create_chat_completion(ASK, temperature=0, max_tokens=16)["choices"][0]["message"]["content"]
    got, ticks, done = [None] * 3, [0], threading.Event()

    def work(i):
        got[i] = llm.create_chat_completion(ASK, temperature=0, max_tokens=16)["choices"][0]["message"]["content"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        ticks[0] += 1  # Python keeps running while the engine computes
        time.sleep(0.001)
    done.set()
    assert got == [want] * 3
    assert ticks[0] > 20, ticks


def test_ctrl_c_stops_a_generation(llm):
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    start = time.monotonic()
    pieces = 0
    with pytest.raises(KeyboardInterrupt):
        for _ in llm.create_completion("Once upon a time", max_tokens=5000 if llm.n_ctx > 5000 else llm.n_ctx - 8,
                                       temperature=0.8, stream=True):
            pieces += 1
    assert time.monotonic() - start < 10 and pieces > 0
    # The model still answers afterwards.
    assert llm.create_completion("Hello", max_tokens=3, temperature=0)["usage"]["completion_tokens"] == 3


def test_embeddings_match_sentence_transformers():
    emb = infer.Llama(MINILM)
    ref = json.load(open(os.path.join(DATA, "embed", "minilm.json")))["sentences"]
    texts = [s["text"] for s in ref]
    r = emb.create_embedding(texts)
    assert r["object"] == "list" and len(r["data"]) == len(texts) and r["usage"]["prompt_tokens"] > 0
    for s, d in zip(ref, r["data"]):
        a, b = d["embedding"], s["embedding"]
        cos = sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
        assert cos >= 0.9999, (s["text"], cos)
    assert len(emb.embed("one text")) == 384
