"""The OpenAI-compatible client against a real HTTP server in its own process on 127.0.0.1.

Run as a script, this file IS that server: a minimal chat-completions endpoint that records every
request (JSON lines) and can reject native tools, fail the first N requests, or answer slowly.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CALL = {"reference_image": 1, "motion_type": "turn_left", "value": 90}


def serve(port: int, log: str, reject_tools: bool, fail_first: int, delay: float):
    import http.server
    state = {"n": 0}

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass

        def _send(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)

        def do_GET(self):
            if self.path.endswith("/models"): return self._send(200, {"object": "list", "data": [{"id": "stub-vl"}]})
            self._send(404, {"error": {"message": "not found"}})

        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions": return self._send(404, {"error": {"message": f"no route {self.path}"}})
            with open(log, "a") as f: f.write(json.dumps({"path": self.path, "auth": self.headers.get("Authorization"), "body": req}) + "\n")
            state["n"] += 1
            if state["n"] <= fail_first: return self._send(503, {"error": {"message": "warming up"}})
            if delay: time.sleep(delay)
            if "tools" in req and reject_tools:
                return self._send(400, {"error": {"message": '"auto" tool choice requires --enable-auto-tool-choice'}})
            msgs = req["messages"]
            n_img = sum(p.get("type") == "image_url" for m in msgs if isinstance(m.get("content"), list) for p in m["content"])
            n_asst = sum(m["role"] == "assistant" for m in msgs)
            if n_asst == 0 and "tools" in req:       # native tool calling: reasoning + a tool call
                msg = {"role": "assistant", "content": None, "reasoning_content": f"I see {n_img} images; look left.",
                       "tool_calls": [{"id": "c0", "type": "function", "function": {"name": "world_simulator", "arguments": json.dumps(CALL)}}]}
            elif n_asst == 0 and "<tools>" in msgs[0]["content"]:   # text-mode tools
                msg = {"role": "assistant", "content": f"<think>I see {n_img} images.</think><tool_call>{json.dumps({'name': 'world_simulator', 'arguments': CALL})}</tool_call>"}
            else:
                msg = {"role": "assistant", "content": f"<think>I see {n_img} images.</think><answer>B</answer>"}
            self._send(200, {"id": "x", "object": "chat.completion", "model": req["model"],
                             "choices": [{"index": 0, "finish_reason": "stop", "message": msg}]})

    http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    procs = []

    def start(*flags):
        port, log = _free_port(), tmp_path / f"requests{len(procs)}.jsonl"
        p = subprocess.Popen([sys.executable, __file__, "--port", str(port), "--log", str(log), *flags])
        procs.append(p)
        for _ in range(200):
            try: urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1); break
            except OSError: time.sleep(0.05)
        else: raise RuntimeError("stub server did not start")
        return f"http://127.0.0.1:{port}/v1", log
    yield start
    for p in procs:
        os.kill(p.pid, signal.SIGTERM); p.wait(timeout=10)


def _requests(log: Path) -> list:
    return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []


def test_native_tools_round_trip_through_the_agent(server):
    from astra_wb.agent import AgentConfig, rollout
    from astra_wb.policies import check_policy, get_policy
    from test_agent import FakeSimulator, sample
    url, log = server()
    pol = get_policy(f"openai:{url}#stub-vl", api_key="sk-test", backoff=0.01)
    trajs = rollout([sample(0), sample(1)], pol, FakeSimulator(), AgentConfig(group_size=2, max_new_tokens=64, temperature=0.7, seed=5))
    for t in trajs:
        assert [type(x.action).__name__ for x in t.turns] == ["Invoke", "Answer"], [x.text for x in t.turns]
        assert t.turns[0].text.startswith("<think>I see 2 images; look left.</think>")
        assert t.final_answer == "B" and t.valid and t.observations[0].provenance().startswith("Image 3: imagined from image 1")
        assert t.turns[1].text == "<think>I see 3 images.</think><answer>B</answer>"   # the imagined image reached the server
    reqs = _requests(log)
    assert len(reqs) == 8 and all(r["auth"] == "Bearer sk-test" and r["path"] == "/v1/chat/completions" for r in reqs)
    first, second = reqs[0]["body"], reqs[-1]["body"]
    assert (first["model"], first["temperature"], first["max_tokens"], first["tool_choice"]) == ("stub-vl", 0.7, 64, "auto")
    assert first["tools"][0]["function"]["name"] == "world_simulator"
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assert second["messages"][2]["tool_calls"][0]["id"] == second["messages"][3]["tool_call_id"]
    assert second["messages"][4]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert check_policy(pol)["name"] == f"openai:{url}#stub-vl"


def test_server_without_tool_calling_gets_tools_as_text(server):
    from astra_wb.policies import OpenAIPolicy, _probe_conversations
    from astra_wb.protocol import TOOLS, parse_turn
    url, log = server("--reject-tools")
    pol = OpenAIPolicy(url, backoff=0.01)       # no '#model': asks the server
    out = pol.respond(_probe_conversations()[:1], tools=TOOLS)
    assert type(parse_turn(out[0], 2)).__name__ == "Invoke" and pol.model == "stub-vl" and not pol.native_tools
    reqs = _requests(log)
    assert "tools" in reqs[0]["body"] and "tools" not in reqs[1]["body"] and "<tools>" in reqs[1]["body"]["messages"][0]["content"]
    pol.respond(_probe_conversations()[:1], tools=TOOLS)
    assert len(_requests(log)) == 3                # remembered: no second rejected attempt


def test_retries_then_success_and_timeouts(server):
    from astra_wb.policies import OpenAIPolicy, PolicyError, _probe_conversations
    url, log = server("--fail-first", "2")
    pol = OpenAIPolicy(url + "#stub-vl", backoff=0.01, max_retries=3)
    assert pol.respond(_probe_conversations()[:1])[0].endswith("<answer>B</answer>")
    assert len(_requests(log)) == 3 and pol.last_finish_reasons == ["stop"]
    url2, log2 = server("--delay", "2")
    slow = OpenAIPolicy(url2 + "#stub-vl", backoff=0.01, max_retries=1, timeout=0.3)
    with pytest.raises(PolicyError, match="failed after 2 tries"):
        slow.respond(_probe_conversations()[:1])
    wrong = OpenAIPolicy(url.replace("/v1", "/v2") + "#stub-vl", backoff=0.01)
    with pytest.raises(PolicyError, match="HTTP 404: .*no route /v2/chat/completions"):   # not retried: a client error
        wrong.respond(_probe_conversations()[:1])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True); ap.add_argument("--log", required=True)
    ap.add_argument("--reject-tools", action="store_true"); ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0)
    a = ap.parse_args()
    serve(a.port, a.log, a.reject_tools, a.fail_first, a.delay)
