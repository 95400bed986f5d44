"""The OpenAI-compatible client; the real server (vLLM) is in test_vllm.py."""

import pytest

from kit.inference.endpoint import EndpointError, endpoint_generator, reply_from


@pytest.mark.parametrize("message,reasoning,answer,closed", [
    ({"content": "The answer.", "reasoning": "step one"}, "step one", "The answer.", True),  # vLLM's parser
    ({"content": None, "reasoning": "cut off mid"}, "cut off mid", "", False),  # `</think>` never came
    ({"content": "The answer.", "reasoning_content": "step one"}, "step one", "The answer.", True),  # older servers
    ({"content": "<think>\nstep one\n</think>\n\nThe answer."}, "step one", "The answer.", True),  # no parser
    ({"content": "Just an answer.", "reasoning": None}, "", "Just an answer.", True),  # thinking off
])
def test_replies_read_the_same_whether_or_not_the_server_parses_reasoning(message, reasoning, answer, closed):
    reply = reply_from(message)
    assert (reply.reasoning, reply.answer, reply.closed) == (reasoning, answer, closed)


def test_an_unreachable_endpoint_is_one_sentence():
    with pytest.raises(EndpointError, match=r"cannot reach http://127.0.0.1:9/v1/models .*is the server running"):
        endpoint_generator("http://127.0.0.1:9/v1")
