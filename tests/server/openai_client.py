"""Drives a running `infer serve` with the official openai client.

Usage: openai_client.py BASE_URL API_KEY   (BASE_URL like http://127.0.0.1:PORT)
Exits non-zero on the first failed check; prints one line per check.
"""
import json
import sys
import urllib.error
import urllib.request

import openai

BASE, KEY = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=120)
MSG = [{"role": "user", "content": "Name three colours."}]


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok   {name}", flush=True)


def raw(path, body=None, key=KEY):
    req = urllib.request.Request(BASE + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


models = client.models.list()
check("models", len(models.data) == 1 and models.data[0].id, models)

full = client.chat.completions.create(model=models.data[0].id, messages=MSG, temperature=0, max_tokens=24)
text = full.choices[0].message.content
check("chat non-stream", full.object == "chat.completion" and text and full.choices[0].message.role == "assistant", full)
u = full.usage
check("usage", u.prompt_tokens > 0 and u.completion_tokens > 0 and u.total_tokens == u.prompt_tokens + u.completion_tokens, u)
check("finish_reason", full.choices[0].finish_reason in ("stop", "length"), full.choices[0].finish_reason)

stream = client.chat.completions.create(model="x", messages=MSG, temperature=0, max_tokens=24, stream=True,
                                        stream_options={"include_usage": True})
chunks = list(stream)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("chat stream text equals non-stream", streamed == text, (streamed, text))
check("stream role first", chunks[0].choices[0].delta.role == "assistant", chunks[0])
check("stream usage last", chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == u.completion_tokens, chunks[-1])
check("stream finish_reason", chunks[-2].choices[0].finish_reason == full.choices[0].finish_reason, chunks[-2])

words = text.split()
stop = words[len(words) // 2]
cut = client.chat.completions.create(model="x", messages=MSG, temperature=0, max_tokens=24, stop=[stop])
check("stop", cut.choices[0].finish_reason == "stop" and text.startswith(cut.choices[0].message.content)
      and stop not in cut.choices[0].message.content, (stop, cut.choices[0].message.content))

story = [{"role": "user", "content": "Tell me a story about a dragon."}]
a = client.chat.completions.create(model="x", messages=story, temperature=1.0, seed=42, max_tokens=16)
b = client.chat.completions.create(model="x", messages=story, temperature=1.0, seed=42, max_tokens=16)
check("seed reproducible", a.choices[0].message.content == b.choices[0].message.content, (a, b))

lp = client.chat.completions.create(model="x", messages=MSG, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3)
content = lp.choices[0].logprobs.content
check("logprobs", len(content) == lp.usage.completion_tokens and all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content), content)
check("greedy token is the most likely", content[0].token == content[0].top_logprobs[0].token, content[0])

two = client.chat.completions.create(model="x", messages=story, temperature=1.0, seed=1, max_tokens=8, n=2)
check("n=2", [c.index for c in two.choices] == [0, 1], two)

comp = client.completions.create(model="x", prompt="The capital of France is", max_tokens=6, temperature=0, echo=True)
check("completions", comp.object == "text_completion" and comp.choices[0].text.startswith("The capital of France is"), comp)
cstream = list(client.completions.create(model="x", prompt="Once upon a time", max_tokens=6, stream=True))
check("completions stream", cstream[-1].choices[0].finish_reason in ("stop", "length"), cstream[-1])

status, tok = raw("/tokenize", {"content": "Hello world"})
check("tokenize", status == 200 and len(tok["tokens"]) >= 2, tok)
status, det = raw("/detokenize", {"tokens": tok["tokens"]})
check("detokenize", status == 200 and det["content"] == "Hello world", det)

try:
    client.chat.completions.create(model="x", messages=MSG, temperature=5)
    check("bad temperature raises", False)
except openai.BadRequestError as e:
    check("bad temperature is 400 naming the field", e.status_code == 400 and e.body["param"] == "temperature", e.body)

try:
    client.chat.completions.create(model="x", messages=[{"role": "user", "content": "word " * 3000}])
    check("long prompt raises", False)
except openai.BadRequestError as e:
    check("prompt too long", e.body["code"] == "context_length_exceeded" and "tokens" in e.body["message"], e.body)

try:
    client.embeddings.create(model="x", input="hello")
    check("embeddings raises", False)
except openai.BadRequestError as e:
    check("embeddings refused", "cannot embed" in e.body["message"], e.body)

status, body = raw("/v1/nothing")
check("404", status == 404 and "error" in body, body)

try:
    openai.OpenAI(base_url=BASE + "/v1", api_key="wrong", max_retries=0).models.list()
    check("wrong key raises", False)
except openai.AuthenticationError as e:
    check("wrong api key is 401", e.status_code == 401, e)

print("all checks passed", flush=True)
