"""The OpenAI-compatible client; the real server (vLLM) is in test_vllm.py."""

import json
import signal
import subprocess
import sys
import time

import pytest

from kit.inference.endpoint import EndpointError, endpoint_generator, reply_from
from tests.conftest import ROOT


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


class FakeServer:
    """An OpenAI-compatible server whose behaviour a test chooses: `plan` is the list of what each chat request gets
    (an HTTP status, "cut" to close the connection, "hang", or a body), the last one repeated."""

    def __init__(self):
        import http.server
        import threading

        fake = self
        self.plan, self.models, self.requests = [200], {"data": [{"id": "m"}]}, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status: int, body):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.send(200, fake.models)

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                what = fake.plan[min(fake.requests, len(fake.plan) - 1)]
                fake.requests += 1
                if what == "cut":
                    self.connection.shutdown(2)
                elif what == "hang":
                    time.sleep(30)
                elif isinstance(what, int):
                    reply = {"choices": [{"message": {"content": f"reply {fake.requests}"}}]}
                    self.send(what, reply if what == 200 else {"error": {"message": "overloaded"}})
                else:
                    self.send(200, what)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def server(monkeypatch):
    import kit.inference.endpoint

    monkeypatch.setattr(kit.inference.endpoint, "RETRIES", (0.01, 0.01, 0.01))  # the backoff, shortened
    fake = FakeServer()
    yield fake
    fake.server.shutdown()


HI = [[{"role": "user", "content": "Hi"}]]


def test_a_5xx_or_a_cut_connection_is_retried(server):
    server.plan = [503, "cut", 500, 200]
    assert endpoint_generator(server.url)(HI, False)[0].answer == "reply 4"
    server.plan, server.requests = [500], 0
    with pytest.raises(EndpointError, match="answered 500: overloaded"):
        endpoint_generator(server.url)(HI, False)
    assert server.requests == 4  # the first try and three retries


@pytest.mark.parametrize("answer,said", [
    (b"{not json", "with a body that is not JSON"),
    ({"choices": []}, r"answered without a reply \(no choices\[0\].message\)"),
    ({"choices": [{"text": "x"}]}, r"answered without a reply"),
])
def test_a_malformed_answer_is_named(server, answer, said):
    server.plan = [answer]
    with pytest.raises(EndpointError, match=said):
        endpoint_generator(server.url)(HI, False)


def test_a_models_list_without_data_is_named(server):
    server.models = {"object": "list"}
    with pytest.raises(EndpointError, match=r"/v1/models answered without a list of models \('data'\)"):
        endpoint_generator(server.url)


def test_a_hung_server_is_given_up_on_after_the_timeout_users_set(server):
    server.plan = ["hang"]
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"sent no reply within 1 s \(eval.request_timeout\)"):
        endpoint_generator(server.url, timeout=1)(HI, False)
    assert time.monotonic() - started < 10


def test_replies_are_kept_as_they_come_and_reused_by_a_rerun(server, tmp_path):
    keep = tmp_path / "replies.jsonl"
    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
    server.plan = [200, 200, 500]  # the third request fails every retry: the evaluation stops there
    with pytest.raises(EndpointError):
        endpoint_generator(server.url, concurrency=1, keep=keep)(prompts, True)
    assert len(keep.read_text().splitlines()) == 2  # what came back before the failure is on disk
    server.plan, server.requests = [200], 0
    replies = endpoint_generator(server.url, concurrency=1, keep=keep)(prompts, True)
    assert server.requests == 1 and [r.answer for r in replies] == ["reply 1", "reply 2", "reply 1"]
    assert endpoint_generator(server.url, concurrency=1, keep=keep)(prompts, False)[0].answer == "reply 2"  # other mode


def test_ctrl_c_stops_a_hung_request_at_once(server):
    code = f"""
from kit.cli import run_command
from kit.inference.endpoint import endpoint_generator
run_command(lambda: endpoint_generator({server.url!r})([[{{"role": "user", "content": "Hi"}}]], False))
"""
    server.plan = ["hang"]
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    while not server.requests:
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "stopped (Ctrl-C)" in err and "Traceback" not in err
    assert time.monotonic() - started < 5  # not the 30 s the request hangs
