"""Generate through an OpenAI-compatible server, e.g. vLLM serving the export: the model users actually serve.

    generate = endpoint_generator("http://localhost:8000/v1", max_new_tokens=1024)

Each request sets `enable_thinking` and the mode's sampling preset explicitly, so scores do not depend on the
server's defaults; replies are split by the same `split_reasoning` the local path uses.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from dataclasses import asdict
from pathlib import Path

from kit.errors import KitError
from kit.inference.generate import Reply, split_reasoning
from kit.models.profiles import PRESETS

CONNECT_TIMEOUT = 10  # seconds; the wait for a reply is eval.request_timeout
RETRIES = (1, 4, 16)  # seconds before each retry of a 5xx answer or a cut connection: a restarting server recovers


class EndpointError(KitError, RuntimeError):
    pass


def _call(method: str, url: str, timeout: float = 600, **kwargs) -> dict:
    """One request's JSON, retried with backoff on a 5xx or a cut connection; anything else wrong in one sentence."""
    import requests

    for wait in (*RETRIES, None):
        try:
            response = requests.request(method, url, timeout=(CONNECT_TIMEOUT, timeout), **kwargs)
        except requests.Timeout:
            raise EndpointError(f"{url} sent no reply within {timeout:g} s (eval.request_timeout); raise it for long "
                                "replies, or check the server.") from None
        except requests.ConnectionError as e:
            if wait is None or "Connection refused" in str(e):
                raise EndpointError(f"cannot reach {url} ({type(e).__name__}); is the server running? "
                                    "scripts/export.py prints the command that starts it.") from None
            time.sleep(wait)
            continue
        if response.status_code >= 500 and wait is not None:
            time.sleep(wait)
            continue
        try:
            body = response.json()
        except ValueError:
            raise EndpointError(f"{url} answered {response.status_code} with a body that is not JSON: "
                                f"{response.text[:200]!r}") from None
        if response.status_code != 200:
            detail = body.get("error", {}).get("message") if isinstance(body, dict) else None
            raise EndpointError(f"{url} answered {response.status_code}: {str(detail or body)[:300]}")
        return body
    raise AssertionError("unreachable")


def served_model(base_url: str, name: str = "") -> str:
    """`name` if the server serves it, else the one model it serves; raises naming what it does serve."""
    url = f"{base_url.rstrip('/')}/models"
    listing = _call("GET", url)
    if not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        raise EndpointError(f"{url} answered without a list of models ('data'): is it an OpenAI-compatible server?")
    served = [m.get("id") for m in listing["data"] if isinstance(m, dict)]
    if name and name not in served:
        raise EndpointError(f"{base_url} does not serve '{name}'; it serves {', '.join(map(str, served))}.")
    if not name and len(served) != 1:
        raise EndpointError(f"{base_url} serves {', '.join(map(str, served)) or 'no model'}; name one "
                            "(eval.endpoint_model).")
    return name or served[0]


def reply_from(message: dict) -> Reply:
    """A chat completion's message as a `Reply`, whether or not the server split the reasoning out."""
    content = message.get("content")
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    if reasoning is None:
        return split_reasoning(content or "")
    # The parser put the think block aside; no content means `</think>` never came (a cut-off trace).
    return split_reasoning(f"<think>\n{reasoning}\n</think>\n\n{content}" if content is not None
                           else f"<think>\n{reasoning}")


def _message(answer: dict, url: str) -> dict:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
        raise EndpointError(f"{url} answered without a reply (no choices[0].message): {str(answer)[:200]}")
    return choices[0]["message"]


def _in_threads(one, n: int, concurrency: int, bar) -> list:
    """`one(i)` for i < n, `concurrency` at a time, in daemon threads: a failure, or Ctrl-C, returns at once instead
    of waiting for the requests in flight (a hung one would hold the exit for its whole timeout)."""
    todo, done, results, failed = queue.Queue(), queue.Queue(), [None] * n, []
    for i in range(n):
        todo.put(i)

    def work():
        while not failed and not todo.empty():
            i = todo.get()
            try:
                results[i] = one(i)
            except BaseException as e:  # handed to the main thread, which raises it
                failed.append(e)
            done.put(i)

    for _ in range(min(concurrency, n)):
        threading.Thread(target=work, daemon=True).start()
    for _ in range(n):
        done.get()
        if failed:
            raise failed[0]
        bar.update()
    return results


def endpoint_generator(base_url: str, model: str = "", *, max_new_tokens: int = 1024, seed: int = 0,
                       concurrency: int = 8, progress: str | None = None, timeout: float = 600,
                       keep: Path | None = None):
    """A generator over a server: `concurrency` requests in flight, request i seeded `seed + i`. With `keep` (JSON
    lines) each reply is saved as it arrives and reused by a rerun asking the same, so an interrupted evaluation
    loses nothing."""
    from tqdm.auto import tqdm

    from kit.files import append_line, read_jsonl

    url = f"{base_url.rstrip('/')}/chat/completions"
    model = served_model(base_url, model)
    kept = {r["key"]: Reply(**r["reply"]) for r in read_jsonl(keep, "delete it: its replies are asked again.")} \
        if keep else {}
    lock = threading.Lock()

    def one(i: int, conversation: list[dict], thinking: bool) -> Reply:
        body = {"model": model, "messages": conversation, "max_tokens": max_new_tokens, "seed": seed + i,
                **PRESETS[thinking], "chat_template_kwargs": {"enable_thinking": thinking}}
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if key in kept:
            return kept[key]
        reply = reply_from(_message(_call("POST", url, timeout, json=body), url))
        if keep:
            with lock:
                append_line(keep, {"key": key, "reply": asdict(reply)})
        return reply

    def run(conversations: list[list[dict]], thinking: bool) -> list[Reply]:
        desc = f"{progress}, thinking {'on' if thinking else 'off'}" if progress else None
        with tqdm(total=len(conversations), desc=desc, unit=" replies", disable=progress is None) as bar:
            return _in_threads(lambda i: one(i, conversations[i], thinking), len(conversations), concurrency, bar)

    return run
