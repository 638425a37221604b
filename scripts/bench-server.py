#!/usr/bin/env python3
"""Concurrent streaming clients against any OpenAI-compatible server on
loopback (`infer serve`, llama-server): aggregate generation tokens/s and
time to first token. Standard library only.

Usage: scripts/bench-server.py BASE_URL CLIENTS SECONDS [MAX_TOKENS]

Each client streams greedy chat requests (fixed prompts, `max_tokens`
MAX_TOKENS, default 64) one after another until SECONDS have passed; a
request started before the deadline runs to its end. Tokens are the
completion tokens the server reports in `usage` (stream_options
include_usage), or the content deltas when it reports none. Prints one JSON
line: requests, req/s, aggregate tok/s, TTFT p50/p99 (seconds).
"""
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

BASE, CLIENTS, SECS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
MAX_TOKENS = int(sys.argv[4]) if len(sys.argv) > 4 else 64
URL = urllib.parse.urlparse(BASE)
assert URL.hostname == "127.0.0.1", "loopback only"
PROMPTS = ["Write a short story about a lighthouse keeper.", "Explain how a bicycle works.",
           "Describe the water cycle.", "Write a poem about autumn leaves.", "Explain what a CPU cache is.",
           "Tell me about the history of tea.", "Describe a busy market in the morning.",
           "Explain why the sky is blue."]


def one(prompt):
    """One streamed request: (completion tokens, seconds to first token)."""
    body = json.dumps({"model": "x", "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                       "max_tokens": MAX_TOKENS, "stream": True, "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=600)
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    first, deltas, usage = None, 0, None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]["completion_tokens"]
        for c in chunk.get("choices", []):
            if (c.get("delta") or {}).get("content"):
                first = first or time.perf_counter()
                deltas += 1
    conn.close()
    return (usage if usage is not None else deltas), (first or time.perf_counter()) - start


def main():
    results, lock = [], threading.Lock()
    deadline = time.perf_counter() + SECS

    def client(i):
        k = i
        while time.perf_counter() < deadline:
            r = one(PROMPTS[k % len(PROMPTS)])
            k += CLIENTS
            with lock:
                results.append(r)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ttft = sorted(r[1] for r in results)
    tokens = sum(r[0] for r in results)
    print(json.dumps({"clients": CLIENTS, "requests": len(results), "req_per_s": round(len(results) / wall, 3),
                      "tok_per_s": round(tokens / wall, 1), "tokens": tokens, "wall_s": round(wall, 1),
                      "ttft_p50": round(statistics.median(ttft), 3),
                      "ttft_p99": round(ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))], 3)}))


if __name__ == "__main__":
    main()
