"""The supervised cold start teaches the turn format: SFT on a handful of teacher trajectories raises held-out format
validity from near 0 (the random model never writes a valid turn) to >= 0.9, greedy, through the RL loop's token policy."""
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from astra_wb.agent import AgentConfig, rollout
from astra_wb.expert import ExpertPolicy
from astra_wb.small_vlm import build_small_qwen3vl
from astra_wb.tiny_vlm import load_tiny
from astra_wb.rewards import r_fmt
from astra_wb.sft import SFTRunConfig, make_sft_trainer, policy_rollouts
from astra_wb.synthqa import generate_bench


def format_validity(model, proc, samples) -> float:
    trajs = policy_rollouts(model, proc, samples, simulator="reproject", max_new_tokens=64, max_turns=3)
    return sum(map(r_fmt, trajs)) / len(trajs)


def test_sft_raises_heldout_format_validity(tmp_path):
    torch.set_num_threads(1)
    train, held = generate_bench(24, seed=1), generate_bench(8, seed=2)   # different scenes: held-out is never trained on
    assert not {s.id for s in train} & {s.id for s in held}
    teacher = rollout(train, ExpertPolicy(), "reproject", AgentConfig())
    assert all(t.valid for t in teacher) and any(t.n_tool_calls for t in teacher)
    path = build_small_qwen3vl(tmp_path / "model", seed=0)
    model, proc = load_tiny(path)
    before = format_validity(model, proc, held)
    assert before <= 0.1, before
    cfg = SFTRunConfig(model=path, output_dir=str(tmp_path / "sft"), max_steps=250, batch_size=2, learning_rate=3e-3,
                       reasoning="last", seed=0, logging_steps=50)
    make_sft_trainer(cfg, trajs=teacher, model=model, processor=proc).train()
    after = format_validity(model, proc, held)
    assert after >= 0.9, (before, after)
