"""Policy backends: registry, conformance (`check_policy`) of every backend, the tiny Qwen3-VL builder."""
import json, subprocess, sys
import threading

import pytest

from astra_wb.policies import (PolicyError, ScriptedPolicy, check_policy, get_policy, policy_names, register_policy,
                               _probe_conversations)
from astra_wb.protocol import TOOLS, Invalid, parse_turn


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    from astra_wb.tiny_vlm import build_tiny_qwen3vl
    return build_tiny_qwen3vl(tmp_path_factory.getbasetemp() / "tiny-qwen3vl")


def test_registry_resolves_every_builtin_name():
    assert {"hf", "openai", "expert", "scripted"} <= set(policy_names())
    with pytest.raises(ValueError, match="unknown policy 'nope'"): get_policy("nope")
    register_policy("replay", "astra_wb.policies:ScriptedPolicy")
    p = get_policy("replay", turns=["<think>x</think><answer>A</answer>"])
    assert isinstance(p, ScriptedPolicy) and get_policy(p) is p
    register_policy("ghost", "astra_wb.policies:NoSuchPolicy")
    with pytest.raises(PolicyError, match="cannot import astra_wb.policies:NoSuchPolicy"): get_policy("ghost")
    with pytest.raises(TypeError): get_policy(42)


def test_scripted_conformance_and_file_spec(tmp_path):
    f = tmp_path / "turns.json"
    f.write_text(json.dumps({"q1": ["<think>a</think><answer>A</answer>"]}))
    p = get_policy(f"scripted:{f}")
    assert p.respond(_probe_conversations()[:1], sample_ids=["q1"]) == ["<think>a</think><answer>A</answer>"]
    check_policy(get_policy("scripted", turns=["<think>a</think><answer>A</answer>"]))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: cannot read scripted turns"): get_policy(f"scripted:{tmp_path / 'bad.json'}")


def test_check_policy_catches_broken_backends():
    class NoName:
        def respond(self, conversations, tools=None, **kw): return [""] * len(conversations)
    with pytest.raises(AssertionError, match="non-empty str `name`"): check_policy(NoName())

    class Short:
        name = "short"
        def respond(self, conversations, tools=None, **kw): return [""]
    with pytest.raises(AssertionError, match="one turn per conversation"): check_policy(Short())

    class Flaky:
        name = "flaky"
        n = 0
        def respond(self, conversations, tools=None, **kw):
            self.n += 1; return [str(self.n)] * len(conversations)
    with pytest.raises(AssertionError, match="not deterministic"): check_policy(Flaky())
    check_policy(Flaky(), deterministic=False)


def test_expert_conformance():
    expert = pytest.importorskip("astra_wb.expert")
    if not hasattr(expert, "ExpertPolicy"): pytest.skip("astra_wb.expert has no ExpertPolicy yet")
    check_policy(get_policy("expert"))


def test_hf_tiny_qwen3vl_conformance(tiny_path):
    pol = get_policy(f"hf:{tiny_path}", batch_size=2)
    assert pol.name == f"hf:{tiny_path}" and type(pol.processor).__name__ == "Qwen3VLImageOnlyProcessor"
    check_policy(pol)
    convs = _probe_conversations() * 2              # 4 conversations -> 2 chunks of batch_size 2
    out = pol.respond(convs, tools=TOOLS, temperature=1.0, top_p=0.9, max_new_tokens=16, seed=7)
    assert len(out) == 4 and out == pol.respond(convs, tools=TOOLS, temperature=1.0, top_p=0.9, max_new_tokens=16, seed=7)
    assert pol.last_finish_reasons == ["length"] * 4 or "stop" in pol.last_finish_reasons
    for text in out: parse_turn(text, 3)         # never raises on random text
    assert pol.stats["new_tokens"] > 0 and pol.stats["calls"] >= 3


def test_tiny_template_is_trls_and_tokens_are_qwens(tiny_path):
    from transformers import AutoProcessor
    import astra_wb.hf  # noqa: F401  registers the image-only processors
    from trl.chat_template_utils import qwen3_vl_chat_template
    from astra_wb.tiny_vlm import hub_offline
    with hub_offline(): proc = AutoProcessor.from_pretrained(tiny_path)
    assert proc.chat_template == qwen3_vl_chat_template == proc.tokenizer.chat_template
    tok = proc.tokenizer
    for t in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<tool_call>",
              "</tool_call>", "<think>", "</think>", "<tool_response>", "</tool_response>"):
        assert len(tok.encode(t, add_special_tokens=False)) == 1, t
    cfg = json.loads((tiny_path_p := __import__("pathlib").Path(tiny_path) / "config.json").read_text())
    assert cfg["image_token_id"] == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg["text_config"]["num_hidden_layers"] == 2 and cfg["text_config"]["hidden_size"] == 64
    assert cfg["vision_config"]["depth"] == 2 and tiny_path_p.exists()


def test_tiny_builder_reuses_and_survives_concurrent_builds(tmp_path, tiny_path):
    from astra_wb.tiny_vlm import build_tiny_qwen3vl, load_tiny
    from pathlib import Path
    weights = Path(tiny_path) / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_qwen3vl(tiny_path) == tiny_path and weights.stat().st_mtime_ns == before   # reused, not rebuilt
    target, results, errors = tmp_path / "shared", [], []
    def build():
        try: results.append(build_tiny_qwen3vl(target))
        except Exception as e: errors.append(e)
    threads = [threading.Thread(target=build) for _ in range(2)]   # threads in one process take turns
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors and results == [str(target)] * 2
    # processes really race: each builds in its own temporary folder and renames it into place
    code = "import sys; from astra_wb.tiny_vlm import build_tiny_qwen3vl; print(build_tiny_qwen3vl(sys.argv[1]))"
    racing = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "raced")], stdout=subprocess.PIPE, text=True)
              for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].strip() for p in racing]
    assert [p.returncode for p in racing] == [0, 0] and outs == [str(tmp_path / "raced")] * 2
    load_tiny(tmp_path / "raced")
    model, proc = load_tiny(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raced", "shared"]   # no temporary build folders left behind


def test_cached_tiny_lives_in_the_workbench_cache(tmp_path, monkeypatch):
    from astra_wb.tiny_vlm import TINY_BUILDER_VERSION, cached_tiny_qwen3vl
    monkeypatch.setenv("ASTRA_WB_CACHE", str(tmp_path))
    path = cached_tiny_qwen3vl()
    assert path == str(tmp_path / f"tiny-qwen3vl-v{TINY_BUILDER_VERSION}") and cached_tiny_qwen3vl() == path
    assert json.loads((tmp_path / path / "astra_tiny.json").read_text())["family"] == "qwen3_vl"


def test_hf_missing_local_folder_fails_fast_with_its_name(tmp_path):
    pytest.importorskip("transformers")
    from astra_wb.hf import load_processor
    from astra_wb.policies import PolicyError
    with pytest.raises(PolicyError, match="nope: no such model folder"):
        load_processor(str(tmp_path / "nope"))


def test_check_policy_checks_what_the_loop_reads():
    "The Policy protocol's optional attributes, as the agent loop uses them, are part of conformance."
    class NoIds:
        name, needs_sample_ids = "no-ids", True
        def respond(self, conversations, tools=None, temperature=None, top_p=None, max_new_tokens=None, seed=None):
            return [""] * len(conversations)
    with pytest.raises(AssertionError, match="rejects sample_ids"): check_policy(NoIds())

    class FlagNotBool:
        name, needs_sample_ids = "flag", "yes"
        def respond(self, conversations, tools=None, **kw): return [""] * len(conversations)
    with pytest.raises(AssertionError, match="needs_sample_ids must be a bool"): check_policy(FlagNotBool())

    class StaleReasons:
        name, last_finish_reasons = "stale", ["stop"]
        def respond(self, conversations, tools=None, **kw): return [""] * len(conversations)
    with pytest.raises(AssertionError, match="last_finish_reasons must hold 2"): check_policy(StaleReasons())

    class Good:
        name, needs_sample_ids = "good", True
        def respond(self, conversations, tools=None, sample_ids=None, group_indices=None, **kw):
            self.last_finish_reasons = ["stop"] * len(conversations)
            return [""] * len(conversations)
    assert check_policy(Good())["name"] == "good"


def test_hf_policy_and_training_policy_decode_alike(tiny_path):
    "One generation path: greedy HFPolicy (eval) and TokenPolicy (training) write the same tokens on the same model."
    from PIL import Image
    from astra_wb.hf import HFPolicy, TokenPolicy, _ctx_key
    from astra_wb.tiny_vlm import load_tiny
    from astra_wb.protocol import system_prompt
    model, proc = load_tiny(tiny_path)
    direct = [{"role": "system", "content": system_prompt("direct")},
              {"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (48, 40), (0, 200, 90))},
                                           {"type": "text", "text": "Where is the lamp?"}]}]
    convs = _probe_conversations() + [direct]   # greedy decoding of `direct` without placeholder suppression differs
    hf, tp = HFPolicy.from_model(model, proc), TokenPolicy(model, proc)
    for n in (24, 64):
        h = hf.respond(convs, tools=TOOLS, temperature=0.0, max_new_tokens=n)
        t = tp.respond(convs, tools=TOOLS, temperature=0.0, max_new_tokens=n)
        ids = [tp._sampled[(_ctx_key(tp.encode(c, TOOLS)[0]), x)] for c, x in zip(convs, t)]
        assert h == [proc.tokenizer.decode(r, skip_special_tokens=True).strip() for r in ids]
        assert hf.last_finish_reasons == tp.last_finish_reasons
