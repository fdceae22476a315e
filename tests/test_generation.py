"""The rollout's generation path on the tiny random Qwen3-VL: one left-padded `generate` per turn for every live
conversation writes, under greedy decoding, the same tokens as generating each conversation alone."""
import pytest

from astra_wb.agent import AgentConfig, rollout
from test_agent import FakeSimulator, sample

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from astra_wb.tiny_vlm import build_tiny_qwen3vl, load_tiny
    return load_tiny(build_tiny_qwen3vl(tmp_path_factory.mktemp("gen") / "tiny-qwen3vl"))


def _tokens(model, proc, samples, max_batch: int, **agent):
    "Each trajectory's turn texts and completion token ids after a greedy rollout with `max_batch` in flight."
    from astra_wb.hf import TokenPolicy
    from astra_wb.rl import trajectory_tokens
    pol = TokenPolicy(model, proc)
    pol.reset(seed=0)
    cfg = AgentConfig(mode="agentic", max_turns=3, max_tool_rounds=2, temperature=0.0, max_batch=max_batch, **agent)
    trajs = rollout(samples, pol, FakeSimulator(), cfg)
    return [([t.text for t in tr.turns], trajectory_tokens(pol, tr, 2)["completion_ids"]) for tr in trajs], pol


@pytest.mark.parametrize("max_new_tokens", [16, 48])
def test_batched_and_one_by_one_greedy_generation_agree(tiny, max_new_tokens):
    """Conversations of different lengths (1 to 3 given images, so different left padding) and different turn
    counts: the batched rollout's tokens equal the one-conversation-at-a-time rollout's, turn by turn."""
    model, proc = tiny
    samples = [sample(0, n_images=1), sample(1, n_images=3), sample(2, n_images=2), sample(3, n_images=1)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batched, pol_b = _tokens(model, proc, samples, 0, max_new_tokens=max_new_tokens)
        alone, pol_a = _tokens(model, proc, samples, 1, max_new_tokens=max_new_tokens)
    finally:
        torch.set_num_threads(threads)
    assert pol_b.n_generated == pol_a.n_generated > 0
    assert pol_b.calls < pol_a.calls   # the batched rollout made fewer generate calls: it did batch
    for (texts_b, ids_b), (texts_a, ids_a) in zip(batched, alone):
        assert texts_b == texts_a
        assert ids_b == ids_a
