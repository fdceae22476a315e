"""The tiny random Qwen3-VL through the real processor -> generate -> parse -> simulator path of the agent."""
import pytest

from astra_wb.agent import AgentConfig, rollout
from astra_wb.policies import ScriptedPolicy
from astra_wb.protocol import INVALID_REASONS, Answer, Invalid, Invoke, build_messages, render_answer, render_tool_call
from astra_wb.motion import Motion
from test_agent import FakeSimulator, sample


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    from astra_wb.tiny_vlm import build_tiny_qwen3vl
    return build_tiny_qwen3vl(tmp_path_factory.getbasetemp() / "tiny-qwen3vl")


def test_random_tiny_qwen3vl_agentic_rollout(tiny_path):
    from astra_wb.policies import get_policy
    pol = get_policy(f"hf:{tiny_path}", batch_size=4)
    sim = FakeSimulator()
    cfg = AgentConfig(mode="agentic", group_size=2, max_turns=3, temperature=1.0, max_new_tokens=24, seed=0)
    trajs = rollout([sample(0), sample(1, n_images=3)], pol, sim, cfg)
    assert len(trajs) == 4
    for t in trajs:
        assert t.policy == f"hf:{tiny_path}" and 1 <= len(t.turns) <= 3
        assert all(isinstance(x.action, (Invoke, Answer, Invalid)) for x in t.turns)
        assert all(r in INVALID_REASONS for r in t.invalid_reasons)
        assert t.meta["stop_reason"] in ("answer", "over_limit")
        if t.meta["stop_reason"] == "over_limit": assert not t.valid and t.final_answer is None
        for x in t.turns:  # every invalid turn was answered with feedback, shown to the policy next turn
            assert (x.feedback is not None) == isinstance(x.action, Invalid)
        assert t.timings["policy"] > 0
    # random text cut at 24 tokens: the agent recorded it as invalid (truncated / no_action / ...), never crashed
    assert sum(len(t.invalid_reasons) for t in trajs) >= 1
    again = rollout([sample(0), sample(1, n_images=3)], pol, FakeSimulator(), cfg)
    assert [[x.text for x in t.turns] for t in again] == [[x.text for x in t.turns] for t in trajs]   # seeded


def test_taught_tiny_qwen3vl_calls_the_simulator_then_answers(tiny_path):
    """Overfit the tiny model on one agentic trajectory (a call, then an answer after seeing the imagined
    image), then let it drive the agent: its own tokens must parse to Invoke, reach the simulator, and
    after the tool response (with the image) parse to the right Answer."""
    import torch
    from astra_wb.hf import HFPolicy
    from astra_wb.tiny_vlm import load_tiny
    from astra_wb.policies import conversation_images
    from astra_wb.protocol import TOOLS
    model, proc = load_tiny(tiny_path)
    call = render_tool_call(Invoke(1, Motion.from_tool("turn_left", 180), "Look behind."))
    answer = render_answer("B", "A lamp.")
    demo = rollout([sample(0)], ScriptedPolicy([call, answer]), FakeSimulator(), AgentConfig())[0]
    msgs = build_messages(demo)
    examples = []
    for prefix, target in ((msgs[:2], call), (msgs[:4], answer)):
        prompt = proc.apply_chat_template(prefix, tools=TOOLS, add_generation_prompt=True, tokenize=False)
        ims = conversation_images(prefix)
        enc = proc(text=[prompt + target + "<|im_end|>"], images=ims, return_tensors="pt")
        labels = enc["input_ids"].clone()
        labels[:, : proc(text=[prompt], images=ims, return_tensors="pt")["input_ids"].shape[1]] = -100
        examples.append((enc, labels))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny matrices: one thread is fastest and immune to a busy machine
    try:
        torch.manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for step in range(300):
            loss = sum(model(**enc, labels=labels).loss for enc, labels in examples)
            loss.backward(); opt.step(); opt.zero_grad()
            if loss.item() < 0.005: break   # memorised: greedy decoding reproduces every token
        model.eval()
        sim = FakeSimulator()
        t = rollout([sample(0)], HFPolicy.from_model(model, proc, name="hf:taught"), sim, AgentConfig(max_new_tokens=64))[0]
    finally: torch.set_num_threads(threads)
    assert [type(x.action).__name__ for x in t.turns] == ["Invoke", "Answer"], [x.text for x in t.turns]
    assert sim.calls == [("s0", 1, "yaw", -180.0)] and t.observations[0].index == 3
    assert (t.final_answer, t.correct, t.valid, t.n_tool_calls) == ("B", True, True, 1)
