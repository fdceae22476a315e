"""Training rollouts through TRL's vLLM engine, on CPU: a stand-in `LLM` with vLLM's interface (colocate mode) and
TRL's real `VLLMClient` against a stand-in server speaking `trl vllm-serve`'s routes (server mode, a separate process
on 127.0.0.1). Both replay scripted turns; the checks are that the agent loop's policy generates through the engine,
with the conversation's exact ids and its images, and that the tokens it returns are the ones trained on.

Run as a script, this file IS the stand-in server."""
import argparse, base64, hashlib, io, json, os, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = ['<think>The box may be to the right; turn right.</think>\n<tool_call>\n{"name": "world_simulator", "arguments": '
          '{"reference_image": 1, "motion_type": "turn_right", "value": 30}}\n</tool_call>',
          "<think>Now it is in view.</think>\n<answer>B</answer>"]


def _reply_ids(tok, prompt_ids):
    "The scripted turn for a prompt (by the number of assistant turns so far), as ids ending in EOS."
    k = tok.decode(prompt_ids).count("<|im_start|>assistant") - 1
    return tok(SCRIPT[min(k, len(SCRIPT) - 1)], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def _runs(ids, token_id):
    "(offset, length) of each run of `token_id` in ids."
    out, i = [], 0
    while i < len(ids):
        if ids[i] == token_id:
            j = i
            while j < len(ids) and ids[j] == token_id: j += 1
            out.append((i, j - i)); i = j
        else: i += 1
    return out


def serve(port: int, tiny: str, log: str):
    "A stand-in for `trl vllm-serve`: /health, /v1/models, /v1/chat/completions/render, /inference/v1/generate, /v1/completions."
    import http.server
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def _send(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        def do_GET(self):
            if self.path == "/health": return self._send(200, {})
            if self.path == "/v1/models": return self._send(200, {"object": "list", "data": [{"id": "stand-in"}]})
            self._send(404, {"detail": "Not Found"})
        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with open(log, "a") as f: f.write(json.dumps({"path": self.path, "body": req}) + "\n")
            if self.path == "/v1/chat/completions/render":       # images only: their features and where they sat
                urls = [p["image_url"]["url"] for m in req["messages"] for p in m["content"] if p["type"] == "image_url"]
                hashes = [hashlib.sha256(base64.b64decode(u.split(",", 1)[1])).hexdigest()[:16] for u in urls]
                return self._send(200, {"features": {"mm_hashes": {"image": hashes},
                                                     "mm_placeholders": {"image": [{"offset": 3 + 10 * i, "length": 4} for i in range(len(urls))]}}})
            if self.path == "/inference/v1/generate":            # token ids paired with features
                ids, feats = req["token_ids"], req["features"]
                runs = [(p["offset"], p["length"]) for p in (feats or {}).get("mm_placeholders", {}).get("image", [])]
                if runs != _runs(ids, image_id):
                    return self._send(400, {"error": f"placeholders {runs} do not match the image tokens {_runs(ids, image_id)}"})
                return self._send(200, {"choices": [{"index": 0, "token_ids": _reply_ids(tok, ids), "logprobs": None}]})
            if self.path == "/v1/completions":                   # text-only prompts as token ids
                return self._send(200, {"choices": [{"index": i, "prompt_token_ids": p, "token_ids": _reply_ids(tok, p), "logprobs": None}
                                                    for i, p in enumerate(req["prompt"])]})
            self._send(404, {"detail": "Not Found"})

    http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()


@pytest.fixture(scope="module")
def tiny():
    from astra_wb.tiny_vlm import cached_tiny_qwen3vl, load_tiny
    path = cached_tiny_qwen3vl()
    model, processor = load_tiny(path)
    return path, model, processor


@pytest.fixture(scope="module")
def sample():
    from astra_wb.scene import make_scene
    from astra_wb.simulators import scene_sample
    s = scene_sample(make_scene(3), width=64, height=48, n_views=2, seed=0)
    s.options, s.answer = {"A": "left", "B": "right"}, "B"
    return s


def _check_rollout(pol, sample, engine_calls):
    from astra_wb.agent import AgentConfig, rollout
    from astra_wb.rl import trajectory_tokens
    from astra_wb.backends import OracleSimulator
    traj = rollout([sample], pol, OracleSimulator(), AgentConfig(max_new_tokens=128, temperature=1.0, seed=3))[0]
    assert [t.text for t in traj.turns] == SCRIPT and traj.final_answer == "B" and traj.valid
    toks = trajectory_tokens(pol, traj)
    model_ids = [t for t, m in zip(toks["completion_ids"], toks["env_mask"]) if m]
    tok = pol.tokenizer
    want = [i for text in SCRIPT for i in tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]]
    assert model_ids == want                               # the engine's tokens are the ones trained on
    assert len(toks["images"]) == 3 and engine_calls() == 2   # two given + one imagined image; one engine call per turn
    return traj


def test_colocate_rollout_generates_through_the_llm(tiny, sample):
    from astra_wb.hf import TokenPolicy
    from astra_wb.rl import VllmEngine
    path, model, processor = tiny
    tok, calls = processor.tokenizer, []

    class StandInLLM:                                        # vllm.LLM.generate's interface
        def generate(self, prompts, sampling_params, use_tqdm=False):
            calls.append((prompts, sampling_params))
            return [SimpleNamespace(prompt_token_ids=p["prompt_token_ids"],
                                    outputs=[SimpleNamespace(token_ids=_reply_ids(tok, p["prompt_token_ids"]))]) for p in prompts]

    pol = TokenPolicy(model, processor)
    pol.engine = VllmEngine(processor, llm=StandInLLM(), sampling_params=lambda **kw: SimpleNamespace(**kw))
    _check_rollout(pol, sample, lambda: len(calls))
    second_prompt, params = calls[1][0][0], calls[1][1][0]
    mm = second_prompt["multi_modal_data"]["image"]
    assert len(mm) == 3 and len(_runs(second_prompt["prompt_token_ids"], processor.image_token_id)) == 3
    assert (params.temperature, params.max_tokens, params.n) == (1.0, 128, 1) and tok.eos_token_id in params.stop_token_ids


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def test_server_rollout_uses_trls_client_against_vllm_serve_routes(tiny, sample, tmp_path):
    from trl.generation.vllm_client import VLLMClient
    import requests
    from astra_wb.hf import TokenPolicy
    from astra_wb.rl import VllmEngine
    path, model, processor = tiny
    port, log = _free_port(), tmp_path / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, __file__, "--port", str(port), "--tiny", str(path), "--log", str(log)])
    try:
        for _ in range(300):
            try: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1); break
            except OSError: time.sleep(0.1)
        else: raise RuntimeError("stand-in server did not start")
        client = VLLMClient.__new__(VLLMClient)       # TRL's client; its constructor needs vllm installed, its methods do not
        client.session, client.base_url, client.model = requests.Session(), f"http://127.0.0.1:{port}", "stand-in"
        pol = TokenPolicy(model, processor)
        pol.engine = VllmEngine(processor, client=client)
        reqs = lambda: [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
        _check_rollout(pol, sample, lambda: sum(r["path"] == "/inference/v1/generate" for r in reqs()))
        gens = [r["body"] for r in reqs() if r["path"] == "/inference/v1/generate"]
        assert [len(g["features"]["mm_placeholders"]["image"]) for g in gens] == [2, 3]   # placed on the trainer's own ids
        seeds = [g["sampling_params"]["seed"] for g in gens]
        assert len(set(seeds)) == 2 and all(g["sampling_params"]["max_tokens"] == 128 for g in gens)
        assert all("<|image_pad|>" in g["sampling_params"]["bad_words"] for g in gens)
    finally:
        os.kill(proc.pid, signal.SIGTERM); proc.wait(timeout=10)


def test_the_trainer_hands_its_engine_to_the_rollout_and_syncs_weights_once_per_step():
    from astra_wb.rl import use_trl_engine
    synced = []
    vg = SimpleNamespace(sync_weights=lambda: synced.append(1), llm="LLM", vllm_client="client")
    trainer = SimpleNamespace(args=SimpleNamespace(use_vllm=True, vllm_mode="colocate"), vllm_generation=vg,
                              state=SimpleNamespace(global_step=0), processing_class="proc")
    e = use_trl_engine(trainer); use_trl_engine(trainer)
    assert e.llm == "LLM" and synced == [1]
    trainer.state.global_step, trainer.args.vllm_mode = 1, "server"
    e = use_trl_engine(trainer)
    assert e.client == "client" and e.llm is None and synced == [1, 1]
    trainer.args.use_vllm = False
    assert use_trl_engine(trainer) is None


def test_make_trainer_passes_the_vllm_settings_to_trl():
    from astra_wb.rl import TrainConfig, train_parser
    a = train_parser().parse_args(["--use-vllm", "--vllm-mode", "server", "--vllm-server-base-url", "http://h:8000"])
    assert (a.use_vllm, a.vllm_mode, a.vllm_server_base_url) == (True, "server", "http://h:8000")
    assert TrainConfig().use_vllm is False


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True); ap.add_argument("--tiny", required=True); ap.add_argument("--log", required=True)
    a = ap.parse_args()
    serve(a.port, a.tiny, a.log)
