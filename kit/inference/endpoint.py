"""Generate through an OpenAI-compatible server, e.g. vLLM serving the export: the model users actually serve,
with the engine they serve it with.

    generate = endpoint_generator("http://localhost:8000/v1", max_new_tokens=1024)
    replies = generate([[{"role": "user", "content": "What is 7 * 8?"}]], False)   # thinking off
    replies[0].answer

Each request sets `chat_template_kwargs.enable_thinking` explicitly and Qwen's sampling preset for the mode (as
`kit.inference.generate` does locally), so the scores do not depend on the server's defaults. A reply is rebuilt into
the text the model generated and split by `kit.inference.generate.split_reasoning`, the same function the local path
uses: with vLLM's `--reasoning-parser qwen3` the think block arrives in `message.reasoning` (`reasoning_content` on
older servers), without a parser inside `content`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from kit.errors import KitError
from kit.inference.generate import Reply, split_reasoning
from kit.models.profiles import PRESETS

TIMEOUT = (10, 3600)  # seconds to connect, and to wait for one long reply


class EndpointError(KitError, RuntimeError):
    pass


def _call(method: str, url: str, **kwargs) -> dict:
    import requests

    try:
        response = requests.request(method, url, timeout=TIMEOUT, **kwargs)
    except requests.RequestException as e:
        raise EndpointError(f"cannot reach {url} ({type(e).__name__}); is the server running? "
                            "scripts/export.py prints the command that starts it.") from None
    if response.status_code != 200:
        try:
            detail = response.json().get("error", {}).get("message") or response.text
        except ValueError:
            detail = response.text
        raise EndpointError(f"{url} answered {response.status_code}: {str(detail)[:300]}")
    return response.json()


def served_model(base_url: str, name: str = "") -> str:
    """`name` if the server serves it, else the one model it serves; raises naming what it does serve."""
    served = [m["id"] for m in _call("GET", f"{base_url.rstrip('/')}/models")["data"]]
    if name and name not in served:
        raise EndpointError(f"{base_url} does not serve '{name}'; it serves {', '.join(served)}.")
    if not name and len(served) != 1:
        raise EndpointError(f"{base_url} serves {', '.join(served)}; name one (eval.endpoint_model).")
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


def endpoint_generator(base_url: str, model: str = "", *, max_new_tokens: int = 1024, seed: int = 0,
                       concurrency: int = 8, progress: str | None = None):
    """A generator (`fn(conversations, thinking) -> list[Reply]`) over a server: `concurrency` requests in flight,
    a progress bar named `progress` (None = no bar). Request i uses seed `seed + i`: reproducible where the
    server honours seeds (vLLM does)."""
    from tqdm.auto import tqdm

    url = f"{base_url.rstrip('/')}/chat/completions"
    model = served_model(base_url, model)

    def one(i: int, conversation: list[dict], thinking: bool) -> Reply:
        body = {"model": model, "messages": conversation, "max_tokens": max_new_tokens, "seed": seed + i,
                **PRESETS[thinking], "chat_template_kwargs": {"enable_thinking": thinking}}
        return reply_from(_call("POST", url, json=body)["choices"][0]["message"])

    def run(conversations: list[list[dict]], thinking: bool) -> list[Reply]:
        desc = f"{progress}, thinking {'on' if thinking else 'off'}" if progress else None
        with ThreadPoolExecutor(concurrency) as pool, \
                tqdm(total=len(conversations), desc=desc, unit=" replies", disable=progress is None) as bar:
            futures = [pool.submit(one, i, c, thinking) for i, c in enumerate(conversations)]
            for future in futures:
                future.add_done_callback(lambda _: bar.update())
            try:
                return [f.result() for f in futures]
            except BaseException:
                for future in futures:  # a failed request (or Ctrl-C) stops the rest rather than waiting for them
                    future.cancel()
                raise

    return run
