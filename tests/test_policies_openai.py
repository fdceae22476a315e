"""The OpenAI-compatible client against a real HTTP server in its own process on 127.0.0.1.

Run as a script, this file IS that server: a minimal chat-completions endpoint that records every
request (JSON lines) and can reject native tools, fail the first N requests, or answer slowly.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CALL = {"reference_image": 1, "motion_type": "turn_left", "value": 90}


def _qwen3_reasoning(text):
    "vLLM's qwen3 reasoning parser, non-streaming: without </think> everything is reasoning."
    head, tag, tail = text.partition("<think>")
    text = tail if tag else head
    if "</think>" in text:
        reasoning, _, content = text.partition("</think>")
        return reasoning, content or None
    return text, None


def _hermes(content):
    "vLLM's hermes tool parser, non-streaming: it also accepts a <tool_call> that never closed."
    if not content or "<tool_call>" not in content: return content, []
    try: calls = [json.loads(a or b) for a, b in re.findall(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", content, re.S)]
    except json.JSONDecodeError: return content, []
    return content[:content.find("<tool_call>")] or None, calls


def _served(raw, cut, max_tokens):
    "What vLLM with --reasoning-parser qwen3 --tool-call-parser hermes answers for the model output `raw`."
    reasoning, content = _qwen3_reasoning(raw)
    content, calls = _hermes(content)
    msg = {"role": "assistant", "content": content, "reasoning_content": reasoning or None,
           "tool_calls": [{"id": f"c{i}", "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                          for i, c in enumerate(calls)]}
    finish = "tool_calls" if calls else "length" if cut else "stop"
    return msg, finish, {"completion_tokens": max_tokens if cut else 5}


def serve(port: int, log: str, reject_tools: bool, fail_first: int, delay: float, no_required: bool = False, raw: str | None = None,
          fail_status: int = 503, ignore_n: bool = False):
    import http.server
    state = {"n": 0}
    scripted = json.loads(Path(raw).read_text()) if raw else None

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
            if state["n"] <= fail_first: return self._send(fail_status, {"error": {"message": "warming up" if fail_status != 500 else "EngineCore encountered an issue"}})
            if delay: time.sleep(delay)
            if "tools" in req and reject_tools:
                return self._send(400, {"error": {"message": '"auto" tool choice requires --enable-auto-tool-choice'}})
            if req.get("tool_choice") == "required" and no_required:
                return self._send(400, {"error": {"message": "tool_choice 'required' is not supported by this server"}})
            if scripted:
                case = scripted[(state["n"] - 1) % len(scripted)]
                msg, finish, usage = _served(case["raw"], case["cut"], req.get("max_tokens"))
                return self._send(200, {"id": "x", "object": "chat.completion", "model": req["model"], "usage": usage,
                                        "choices": [{"index": 0, "finish_reason": finish, "message": msg}]})
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
                             "choices": [{"index": i, "finish_reason": "stop", "message": msg} for i in range(1 if ignore_n else req.get("n", 1))]})

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
    reqs = _requests(log)   # the two samples' conversations are identical: each turn is one request with n=4
    assert len(reqs) == 2 and all(r["auth"] == "Bearer sk-test" and r["path"] == "/v1/chat/completions" for r in reqs)
    first, second = reqs[0]["body"], reqs[-1]["body"]
    assert (first["model"], first["temperature"], first["max_tokens"], first["tool_choice"], first["n"]) == ("stub-vl", 0.7, 64, "auto", 4)
    assert first["tools"][0]["function"]["name"] == "world_simulator"
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]
    assert second["messages"][2]["tool_calls"][0]["id"] == second["messages"][3]["tool_call_id"]
    assert second["messages"][3]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")   # inline
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
    url3, log3 = server("--fail-first", "5", "--fail-status", "500")
    with pytest.raises(PolicyError, match="HTTP 500: .*EngineCore"):          # a server error is not resubmitted
        OpenAIPolicy(url3 + "#stub-vl", backoff=0.01, max_retries=3).respond(_probe_conversations()[:1])
    assert len(_requests(log3)) == 1
    wrong = OpenAIPolicy(url.replace("/v1", "/v2") + "#stub-vl", backoff=0.01)
    with pytest.raises(PolicyError, match="HTTP 404: .*no route /v2/chat/completions"):   # not retried: a client error
        wrong.respond(_probe_conversations()[:1])



def test_inline_tool_images_render_like_the_transformers_path():
    from astra_wb.hf import load_processor
    from astra_wb.tiny_vlm import cached_tiny_qwen3vl
    from astra_wb.policies import _probe_conversations, to_openai_messages, vllm_chat_view
    from astra_wb.protocol import TOOLS
    proc = load_processor(cached_tiny_qwen3vl())
    conv = _probe_conversations()[1]              # a tool call, an imagined image, a later turn
    render = lambda msgs: proc.apply_chat_template(msgs, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    hf = render(conv)                             # the prompt the transformers backend (and training) builds
    inline = render(vllm_chat_view(to_openai_messages(conv, TOOLS, True)))
    split = render(vllm_chat_view(to_openai_messages(conv, TOOLS, True, tool_images="split")))
    assert inline.encode() == hf.encode()
    assert split != hf and split.count("<|image_pad|>") == hf.count("<|image_pad|>") == 3
    assert "</tool_response><|im_end|>\n<|im_start|>user\n<|vision_start|>" in split   # the image moved out of the tool turn


CALL_JSON = json.dumps({"name": "world_simulator", "arguments": CALL})
RAW_CASES = [  # model outputs, and whether max_tokens cut them
    {"raw": f"<think>Look left.</think>\n<tool_call>\n{CALL_JSON}\n</tool_call>", "cut": False},
    {"raw": f"<think>Look left.</think>\n<tool_call>\n{CALL_JSON}", "cut": True},
    {"raw": "<think>I keep thinking about the chair and the", "cut": True},
    {"raw": "<think>ok</think><answer>B</answer>", "cut": False},
    {"raw": "<think>ok</think> So it is B.", "cut": False},
]


def _outcome(text, finish):
    from astra_wb.protocol import Invalid, parse_turn
    a = parse_turn(text, 2)          # as the agent judges a turn: a cut turn that is invalid is truncated
    if isinstance(a, Invalid): return "truncated" if finish == "length" else a.reason
    return type(a).__name__


def test_reasoning_and_tool_parsers_count_invalid_turns_like_transformers(server, tmp_path):
    from astra_wb.policies import OpenAIPolicy, _probe_conversations
    from astra_wb.protocol import TOOLS
    (tmp_path / "raw.json").write_text(json.dumps(RAW_CASES))
    url, _ = server("--raw", str(tmp_path / "raw.json"))
    pol = OpenAIPolicy(url + "#stub-vl", backoff=0.01)
    got = []
    for case in RAW_CASES:
        text = pol.respond(_probe_conversations()[:1], tools=TOOLS, max_new_tokens=32)[0]
        got.append(_outcome(text, pol.last_finish_reasons[0]))
    want = [_outcome(c["raw"], "length" if c["cut"] else "stop") for c in RAW_CASES]
    assert want == ["Invoke", "truncated", "truncated", "Answer", "no_action"] and got == want


def test_a_group_is_one_request_with_n_choices(server):
    from astra_wb.agent import AgentConfig, rollout
    from astra_wb.policies import get_policy
    from test_agent import FakeSimulator, sample
    url, log = server()
    trajs = rollout([sample(0)], get_policy(f"openai:{url}#stub-vl", backoff=0.01), FakeSimulator(),
                    AgentConfig(group_size=4, max_new_tokens=64, temperature=1.0, seed=5))
    assert len(trajs) == 4 and all(t.final_answer == "B" for t in trajs)
    assert [r["body"].get("n") for r in _requests(log)] == [4, 4]      # two turns, one prefill each
    url2, log2 = server("--ignore-n")                                  # a server without n: one request per conversation
    pol = get_policy(f"openai:{url2}#stub-vl", backoff=0.01)
    assert len(rollout([sample(0)], pol, FakeSimulator(), AgentConfig(group_size=4, max_new_tokens=64))) == 4 and not pol.use_n
    assert [r["body"].get("n") for r in _requests(log2)] == [4] + [None] * 8


def test_forced_mode_requires_a_tool_call_where_the_server_can(server):
    from astra_wb.agent import AgentConfig, rollout
    from astra_wb.policies import get_policy
    from test_agent import FakeSimulator, sample
    url, log = server()
    t = rollout([sample(0)], get_policy(f"openai:{url}#stub-vl", backoff=0.01), FakeSimulator(), AgentConfig(mode="forced", forced_k=1))[0]
    assert [r["body"]["tool_choice"] for r in _requests(log)] == ["required", "auto"] and t.final_answer == "B"
    url2, log2 = server("--no-required")
    pol = get_policy(f"openai:{url2}#stub-vl", backoff=0.01)
    for _ in range(2): rollout([sample(0)], pol, FakeSimulator(), AgentConfig(mode="forced", forced_k=1))
    assert [r["body"]["tool_choice"] for r in _requests(log2)] == ["required", "auto", "auto", "auto", "auto"]


def test_pixel_limits_and_template_kwargs_reach_the_server(server):
    from astra_wb.hf import load_processor
    from astra_wb.tiny_vlm import cached_tiny_qwen3vl
    from astra_wb.policies import OpenAIPolicy, _probe_conversations, processor_pixel_limits
    url, log = server()
    limits = processor_pixel_limits(load_processor(cached_tiny_qwen3vl()))
    assert limits and all(v for v in limits.values())
    OpenAIPolicy(url + "#stub-vl", mm_processor_kwargs=limits, chat_template_kwargs={"enable_thinking": True}).respond(_probe_conversations()[:1])
    body = _requests(log)[0]["body"]
    assert body["mm_processor_kwargs"] == limits and body["chat_template_kwargs"] == {"enable_thinking": True}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True); ap.add_argument("--log", required=True)
    ap.add_argument("--reject-tools", action="store_true"); ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0); ap.add_argument("--no-required", action="store_true")
    ap.add_argument("--raw", default=None); ap.add_argument("--fail-status", type=int, default=503)
    ap.add_argument("--ignore-n", action="store_true")
    a = ap.parse_args()
    serve(a.port, a.log, a.reject_tools, a.fail_first, a.delay, a.no_required, a.raw, a.fail_status, a.ignore_n)
