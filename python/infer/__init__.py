"""infer from Python: local LLM inference with llama-cpp-python's shapes.

    from infer import Llama
    llm = Llama("models/SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=2048)
    r = llm.create_chat_completion([{"role": "user", "content": "Hi!"}])
    print(r["choices"][0]["message"]["content"])

`Llama` (also exported as `Model`) takes the arguments llama-cpp-python's
does that infer has (`model_path`, `n_ctx`, `n_threads`, `n_gpu_layers`;
others are accepted and ignored), and returns the same OpenAI-shaped dicts,
so code ports by changing the import. Every computing call releases the
GIL; a streamed or not generation stops on Ctrl-C (KeyboardInterrupt).
"""

import json
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from . import _infer

__version__ = _infer.__version__
__all__ = ["Llama", "Model", "__version__"]


def _now() -> int:
    return int(time.time())


def _stops(stop: Union[None, str, Sequence[str]]) -> List[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str) and s]


class Llama:
    """A loaded model: a GGUF file or a Hugging Face folder."""

    def __init__(self, model_path: str, n_ctx: int = 0, n_threads: Optional[int] = None,
                 n_gpu_layers: int = 0, seed: Optional[int] = None, verbose: bool = False, **_ignored: Any):
        self.model_path = model_path
        self._model = _infer.Model(model_path, n_ctx=n_ctx, n_threads=n_threads or 0, n_gpu_layers=n_gpu_layers)
        self._seed = seed

    @property
    def n_ctx(self) -> int:
        return self._model.n_ctx

    @property
    def name(self) -> str:
        return self._model.name

    # ---------------------------------------------------------- tokens

    def tokenize(self, text: Union[bytes, str], add_bos: bool = True, special: bool = False) -> List[int]:
        """Token ids of `text` (bytes, as llama-cpp-python takes, or str)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return self._model.tokenize(text, add_bos, special)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self._model.detokenize(list(tokens))

    # ---------------------------------------------------------- generation

    def _options(self, max_tokens: Optional[int], prompt_len: int, **kw: Any) -> Dict[str, Any]:
        room = self.n_ctx - prompt_len
        if max_tokens is None or max_tokens <= 0 or max_tokens > room:
            max_tokens = room
        o = {k: v for k, v in kw.items() if v is not None}
        o["max_tokens"] = max_tokens
        if "seed" not in o and self._seed is not None:
            o["seed"] = self._seed
        return o

    def _run(self, prompt: List[int], options: Dict[str, Any]):
        return self._model.generate(prompt, json.dumps(options))

    def create_completion(self, prompt: str, max_tokens: Optional[int] = 16, temperature: float = 0.8,
                          top_p: float = 0.95, min_p: float = 0.05, top_k: int = 40, repeat_penalty: float = 1.0,
                          seed: Optional[int] = None, stop: Union[None, str, Sequence[str]] = None,
                          stream: bool = False, **_ignored: Any):
        """Continues `prompt` as plain text: a `text_completion` dict, or its chunks with `stream`."""
        ids = self._model.tokenize(prompt, True, False)
        options = self._options(max_tokens, len(ids), temperature=temperature, top_p=top_p, min_p=min_p,
                                top_k=top_k, repeat_penalty=repeat_penalty, seed=seed, stop=_stops(stop))
        gen = self._run(ids, options)
        cid, created = f"cmpl-{uuid.uuid4().hex}", _now()

        def chunk(text: str, finish: Optional[str]) -> Dict[str, Any]:
            return {"id": cid, "object": "text_completion", "created": created, "model": self.name,
                    "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}

        if stream:
            def chunks() -> Iterator[Dict[str, Any]]:
                for piece in gen:
                    yield chunk(piece, None)
                yield chunk("", gen.finish_reason)
            return chunks()
        text = "".join(gen)
        out = chunk(text, gen.finish_reason)
        out["usage"] = _usage(gen)
        return out

    __call__ = create_completion

    def create_chat_completion(self, messages: List[Dict[str, Any]], temperature: float = 0.2, top_p: float = 0.95,
                               top_k: int = 40, min_p: float = 0.05, repeat_penalty: float = 1.0,
                               seed: Optional[int] = None, stop: Union[None, str, Sequence[str]] = None,
                               max_tokens: Optional[int] = None, stream: bool = False,
                               response_format: Optional[Dict[str, Any]] = None,
                               tools: Optional[List[Dict[str, Any]]] = None, tool_choice: Any = None,
                               **_ignored: Any):
        """Answers a conversation through the model's chat template: a
        `chat.completion` dict, or its `chat.completion.chunk`s with `stream`.
        `response_format` takes `{"type": "json_object"}` and
        `{"type": "json_schema", "json_schema": {"schema": …, "strict": …}}`
        (OpenAI's) or `{"type": "json_object", "schema": …}` (llama-cpp-python's)."""
        if tools and tool_choice != "none":
            raise NotImplementedError("tools: not in the Python package yet; `infer serve` answers them over HTTP")
        plain = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise ValueError(f"messages[{i}]: want a dict with a string 'role'")
            content = m.get("content")
            if isinstance(content, list):  # OpenAI text parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            plain.append({"role": m["role"], "content": content or ""})
        ids = self._model.chat_tokens(json.dumps(plain))
        stops = _stops(stop)
        if self._model.end_of_turn:
            stops.append(self._model.end_of_turn)
        extra: Dict[str, Any] = {}
        if response_format:
            kind = response_format.get("type")
            schema = response_format.get("schema")
            if kind == "json_schema":
                spec = response_format.get("json_schema") or {}
                schema, extra["strict"] = spec.get("schema"), bool(spec.get("strict", False))
                if schema is None:
                    raise ValueError("response_format.json_schema.schema is missing")
            elif kind != "json_object" and kind != "text":
                raise ValueError(f"response_format.type {kind!r}: want text, json_object or json_schema")
            if schema is not None:
                extra["schema"] = schema
            elif kind == "json_object":
                extra["json_object"] = True
        options = self._options(max_tokens, len(ids), temperature=temperature, top_p=top_p, min_p=min_p,
                                top_k=top_k, repeat_penalty=repeat_penalty, seed=seed, stop=stops, **extra)
        gen = self._run(ids, options)
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", _now()

        def chunk(delta: Dict[str, Any], finish: Optional[str]) -> Dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.name,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        if stream:
            def chunks() -> Iterator[Dict[str, Any]]:
                yield chunk({"role": "assistant"}, None)
                for piece in gen:
                    yield chunk({"content": piece}, None)
                yield chunk({}, gen.finish_reason)
            return chunks()
        text = "".join(gen)
        return {"id": cid, "object": "chat.completion", "created": created, "model": self.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": gen.finish_reason}],
                "usage": _usage(gen)}

    # ---------------------------------------------------------- embeddings

    def embed(self, input: Union[str, List[str]]) -> Union[List[float], List[List[float]]]:
        """Pooled, L2-normalised vectors (one list per text; a bare str gives one vector)."""
        if isinstance(input, str):
            return self._model.embed([input])[0][0]
        return self._model.embed(list(input))[0]

    def create_embedding(self, input: Union[str, List[str]], model: Optional[str] = None) -> Dict[str, Any]:
        texts = [input] if isinstance(input, str) else list(input)
        vectors, n = self._model.embed(texts)
        return {"object": "list", "model": model or self.name,
                "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": n, "total_tokens": n}}


def _usage(gen) -> Dict[str, int]:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens}


Model = Llama
