"""The built-in chat page (GET /) in headless Chromium, driven through the
DevTools protocol: it loads, shows the model, streams two replies of one
conversation with the system prompt and sampling settings from the sidebar,
shows tokens/s, and matches the API's own answer for the same request.

Usage: chat_page.py BASE_URL SCREENSHOT.png

Chromium gets a dead loopback proxy for everything but loopback, and its
background services are off, so the test talks only to 127.0.0.1.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # websocket-client, installed into .venv by scripts/test.sh

BASE = sys.argv[1]
SHOT = sys.argv[2]
DEADLINE_S = 120


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium on PATH: scripts/test.sh installs Debian's chromium package")


class Page:
    """One page target over the DevTools websocket."""

    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expr, what, timeout=DEADLINE_S):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.eval(expr)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {expr}")


def api_reply(body):
    req = urllib.request.Request(
        BASE + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)["choices"][0]["message"]["content"]


def main():
    profile = tempfile.mkdtemp(prefix="infer-chromium-")
    args = [
        chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", "--window-size=1200,800",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
        "--no-default-browser-check", "--metrics-recording-only",
        # Loopback bypasses a proxy by default; anything else goes to a dead port.
        "--proxy-server=http://127.0.0.1:9",
        "about:blank",
    ]
    browser = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        end = time.monotonic() + 60
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            assert browser.poll() is None, "chromium exited at start"
            assert time.monotonic() < end, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        page = Page(target["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Page.navigate", url=BASE + "/")
        page.wait_for("document.readyState === 'complete' && document.title === 'infer chat'", "the page")
        model = page.wait_for(
            "document.getElementById('model').textContent.includes('SmolLM2') && document.getElementById('model').textContent",
            "the model name from /v1/models",
        )
        assert "tokens per slot" in model, model
        print("model line:", model)

        # Sidebar settings: a system prompt and greedy sampling with a fixed budget.
        system = "You are a terse assistant."
        page.eval(f"""(() => {{
            const set = (id, v) => {{ document.getElementById(id).value = v; }};
            set('system', {json.dumps(system)});
            set('temperature', '0'); set('max_tokens', '12'); set('seed', '7');
        }})()""")

        def say(text):
            # Type into the box and press Enter, as a user does.
            page.eval("document.getElementById('input').focus()")
            page.call("Input.insertText", text=text)
            for kind in ("keyDown", "keyUp"):
                page.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                          windowsVirtualKeyCode=13, nativeVirtualKeyCode=13, text="\r" if kind == "keyDown" else "")
            page.wait_for("document.getElementById('send').disabled", "the request to start", timeout=10)
            page.wait_for("!document.getElementById('send').disabled", "the reply to finish")
            return page.eval("""(() => {
                const all = document.querySelectorAll('.msg.assistant');
                const last = all[all.length - 1];
                const meta = last.querySelector('.meta');
                return { n: all.length, text: last.firstChild ? last.firstChild.textContent : '',
                         meta: meta ? meta.textContent : '', error: document.querySelectorAll('.msg.error').length };
            })()""")

        first = say("What is the capital of France?")
        print("reply 1:", json.dumps(first))
        assert first["error"] == 0, first
        assert first["n"] == 1 and first["text"].strip(), first
        assert re.match(r"^\d+ tokens · [0-9.–]+ tok/s · first token [0-9.]+ s · (stop|length)$", first["meta"]), first
        status = page.eval("document.getElementById('status').textContent")
        assert status.startswith("last reply:") and "tok/s" in status, status

        # The page sent what the API gives for the same messages and settings.
        settings = {"temperature": 0, "max_tokens": 12, "seed": 7, "top_p": 0.95, "top_k": 40,
                    "min_p": 0.05, "repeat_penalty": 1.0}
        turn1 = [{"role": "system", "content": system},
                 {"role": "user", "content": "What is the capital of France?"}]
        want1 = api_reply(dict(settings, messages=turn1))
        assert first["text"] == want1, (first["text"], want1)

        # The second turn carries the conversation: system, user, assistant, user.
        second = say("And of Italy?")
        print("reply 2:", json.dumps(second))
        assert second["error"] == 0 and second["n"] == 2 and second["text"].strip(), second
        turn2 = turn1 + [{"role": "assistant", "content": first["text"]},
                         {"role": "user", "content": "And of Italy?"}]
        want2 = api_reply(dict(settings, messages=turn2))
        assert second["text"] == want2, (second["text"], want2)
        assert page.eval("conversation.length") == 4

        # Stop mid-reply: the page aborts the stream, the server cancels the
        # request and its slot goes back to idle. A reply can end by itself
        # before the click lands (the system prompt asks for terse answers,
        # and another CPU can take another greedy path), so a reply that did
        # is followed by a longer request, up to three.
        page.eval("document.getElementById('max_tokens').value = '400'")
        page.eval("document.getElementById('system').value = 'You are a storyteller who writes very long stories.'")
        prompts = ["Tell me a long story about a dragon.",
                   "Write a very long poem about the sea, with at least thirty verses.",
                   "Count from 1 to 400, writing every number in words."]
        for attempt, prompt in enumerate(prompts):
            n = page.eval("document.querySelectorAll('.msg.assistant').length")
            page.eval(f"document.getElementById('input').value = {json.dumps(prompt)}")
            page.eval("document.getElementById('form').requestSubmit()")
            page.wait_for(f"document.querySelectorAll('.msg.assistant')[{n}]?.textContent.length > 0", "the reply to start")
            page.eval("document.getElementById('stop').click()")
            page.wait_for("!document.getElementById('send').disabled", "the stopped reply to settle", timeout=30)
            meta = page.eval(f"document.querySelectorAll('.msg.assistant')[{n}].querySelector('.meta').textContent")
            print(f"stop attempt {attempt + 1}:", meta)
            if meta.endswith("stopped"):
                break
        assert meta.endswith("stopped"), meta
        end = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(BASE + "/metrics", timeout=10) as r:
                metrics = r.read().decode()
            busy = [l for l in metrics.splitlines() if l.startswith("infer_slots_busy ")]
            cancelled = [l for l in metrics.splitlines() if l.startswith("infer_requests_cancelled_total ")]
            if busy == ["infer_slots_busy 0"] and cancelled and float(cancelled[0].split()[1]) >= 1:
                break
            assert time.monotonic() < end, (busy, cancelled)
            time.sleep(0.2)
        print("stopped reply:", meta, "|", cancelled[0])

        shot = page.call("Page.captureScreenshot", format="png")["data"]
        png = base64.b64decode(shot)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, len(png)
        with open(SHOT, "wb") as f:
            f.write(png)
        print(f"screenshot: {SHOT} ({len(png)} bytes)")

        # "New conversation" clears the log and the history.
        page.eval("document.getElementById('reset').click()")
        assert page.eval("conversation.length") == 0
        assert page.eval("document.querySelectorAll('.msg').length") == 0
        print("chat page OK")
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
