"""A bounded load and fault test of a running `infer serve` (loopback only).

Usage: load.py BASE_URL API_KEY SECONDS_PER_LEVEL LEVELS(comma list)

For each level C, C client threads stream greedy chat requests for the given
time (and at most 200 requests each). Every reply must be well formed and
equal its prompt's reply run alone (none lost, none mixed with another's
text). Then faults: clients dropped mid-stream, a slow reader, malformed and
oversized bodies; afterwards the slots must return to idle and the server
must still answer. Prints one JSON line per level with requests/s,
aggregate tokens/s and p50/p99 time to first token.
"""
import json
import socket
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import openai

BASE, KEY, SECS, LEVELS = sys.argv[1], sys.argv[2], float(sys.argv[3]), [int(x) for x in sys.argv[4].split(",")]
HOST, PORT = urllib.parse.urlparse(BASE).hostname, urllib.parse.urlparse(BASE).port
assert HOST == "127.0.0.1", "loopback only"
client = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=300)
PROMPTS = ["Name a fruit.", "What is two plus two?", "Say hello.", "Name a planet.", "What colour is the sky?",
           "Name an animal.", "Count to three.", "Name a country."]
MAX_TOKENS = 24


def fail(msg):
    print(f"FAIL {msg}", flush=True)
    sys.exit(1)


def ask(prompt):
    """One streamed greedy request: (text, completion tokens, ttft seconds)."""
    start = time.perf_counter()
    first, parts, usage, finish = None, [], None, None
    for chunk in client.chat.completions.create(model="x", messages=[{"role": "user", "content": prompt}],
                                                temperature=0, max_tokens=MAX_TOKENS, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                first = first or time.perf_counter()
                parts.append(c.delta.content)
            finish = c.finish_reason or finish
    if usage is None or finish not in ("stop", "length"):
        fail(f"malformed stream for {prompt!r}: usage={usage} finish={finish}")
    return "".join(parts), usage.completion_tokens, (first or time.perf_counter()) - start


def health():
    req = urllib.request.Request(BASE + "/health")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


reference = {p: ask(p)[0] for p in PROMPTS}

for level in LEVELS:
    results, errors, lock = [], [], threading.Lock()
    deadline = time.perf_counter() + SECS

    def worker(i):
        n = 0
        while time.perf_counter() < deadline and n < 200:
            prompt = PROMPTS[(i + n) % len(PROMPTS)]
            try:
                text, tokens, ttft = ask(prompt)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(repr(e))
                return
            with lock:
                results.append((prompt, text, tokens, ttft))
            n += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(level)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECS + 300)
    wall = time.perf_counter() - start
    if errors:
        fail(f"{len(errors)} requests failed at {level} clients: {errors[:3]}")
    mixed = [(p, t) for p, t, _, _ in results if t != reference[p]]
    if mixed:
        fail(f"{len(mixed)} replies differ from their prompt's reply alone at {level} clients: {mixed[:2]}")
    ttfts = sorted(r[3] for r in results)
    p99 = ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))]
    print(json.dumps({"clients": level, "requests": len(results), "seconds": round(wall, 2),
                      "requests_per_s": round(len(results) / wall, 2),
                      "tokens_per_s": round(sum(r[2] for r in results) / wall, 1),
                      "ttft_p50_s": round(statistics.median(ttfts), 3), "ttft_p99_s": round(p99, 3)}), flush=True)

# Faults. Clients that vanish mid-stream:
body = json.dumps({"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 400,
                   "stream": True, "logit_bias": {"0": -100, "2": -100}}).encode()
head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
for _ in range(4):
    s = socket.create_connection((HOST, PORT), timeout=30)
    s.sendall(head + body)
    got = s.recv(4096)
    if b"200 OK" not in got:
        fail(f"dropped client got {got[:200]!r}")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset, as a killed client
    s.close()
# A slow reader: a few bytes now and then, then gone.
s = socket.create_connection((HOST, PORT), timeout=30)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
s.sendall(head + body)
for _ in range(10):
    s.recv(64)
    time.sleep(0.2)
s.close()
# Malformed and oversized bodies.
for data, want in [(b"{not json", 400), (b"[1,2", 400), (b"x" * (5 << 20), 413)]:
    req = urllib.request.Request(BASE + "/v1/chat/completions", data=data,
                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=60)
        fail(f"bad body of {len(data)} bytes was accepted")
    except urllib.error.HTTPError as e:
        if e.code != want or "error" not in json.loads(e.read()):
            fail(f"bad body of {len(data)} bytes got {e.code}, expected {want}")
    except (ConnectionResetError, BrokenPipeError, urllib.error.URLError) as e:
        # The server may close the connection while a too-large body is still being sent.
        if want != 413:
            fail(f"bad body got {e!r}")

for _ in range(300):
    h = health()
    if h["slots_busy"] == 0 and h["queued"] == 0:
        break
    time.sleep(0.05)
else:
    fail(f"slots did not return to idle after the faults: {h}")
if ask(PROMPTS[0])[0] != reference[PROMPTS[0]]:
    fail("the server answers differently after the faults")
print(json.dumps({"faults": "ok", "health": h}), flush=True)
