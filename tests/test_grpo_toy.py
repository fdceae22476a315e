"""GRPO learns through the real path: a few steps of `rl.make_trainer` (TRL's GRPOTrainer, the agent loop, the
`reproject` simulator) on a two-family toy move the tool-call rate the way a plain reward function asks.

The small preset is cold-started (`sft`) on scripted trajectories that call on two of three rollouts of every
question, on both families alike; its held-out tool-call rate is strictly between 0 and 1 on each family. The reward
pays a well-formed trajectory that calls on one family and answers at once on the other. Rates are measured on
held-out questions (other scenes), sampled, with fixed seeds, before and after. The test can fail: the flipped reward
must flip the move, and with a zero learning rate the same seeds give the same rates.

Today the direction test fails (marked strict xfail, with the measured rates below): the cold start and the zero-rate
control pass, but eight steps move both families together. It is marked `slow` and left out of the default run:
`python -m pytest -m slow tests/test_grpo_toy.py` runs it. The diagnosis (what moves the families together and which
recipes were measured) is under the figures below and in the curriculum notebook's toy section."""
import math, os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
import pytest
import torch
from astra_wb.agent import AgentConfig
from astra_wb.curriculum import family_usage_reward, tool_rates, toy_split, toy_teacher
from astra_wb.rl import TrainConfig, make_trainer
from astra_wb.sft import SFTRunConfig, make_sft_trainer
from astra_wb.small_vlm import build_small_qwen3vl
from astra_wb.tiny_vlm import load_tiny

FAMILIES = ("direct", "perspective")
TEMPERATURE, TOKENS = 0.7, 56        # rollouts: sampling temperature, tokens per turn (a call turn is ~50)
STEPS, LR = 8, 3e-4                  # GRPO optimiser steps and learning rate of each arm
CALLS, ANSWERS = 2, 1                # teacher trajectories per question that call / answer at once


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    "The cold start (saved), the training and held-out questions, and the held-out rates before any GRPO step."
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("toy")
    train, held = toy_split(6, seed=1), toy_split(8, seed=2)
    assert not {s.id for s in train} & {s.id for s in held}
    model, proc = load_tiny(build_small_qwen3vl(tmp / "model", seed=0))
    cfg = SFTRunConfig(model=str(tmp / "model"), output_dir=str(tmp / "sft"), max_steps=150, batch_size=2,
                       learning_rate=3e-3, reasoning="full", seed=0, logging_steps=50, max_tool_rounds=1)
    make_sft_trainer(cfg, trajs=toy_teacher(train, CALLS, ANSWERS), model=model, processor=proc).train()
    model.save_pretrained(tmp / "cold")
    proc.save_pretrained(tmp / "cold")
    before = tool_rates(model, proc, held, temperature=TEMPERATURE, max_new_tokens=TOKENS)
    return dict(tmp=tmp, train=train, held=held, before=before)


def grpo(toy, call_family: str, lr: float, steps: int) -> dict:
    "GRPO from the cold start with the reward for calls on `call_family`; the held-out rates after."
    model, proc = load_tiny(toy["tmp"] / "cold")
    agent = AgentConfig(temperature=TEMPERATURE, max_new_tokens=TOKENS, max_tool_rounds=1, max_turns=2)
    cfg = TrainConfig(output_dir=str(toy["tmp"] / f"grpo-{call_family}-{lr}"), simulator="reproject", agent=agent,
                      max_steps=steps, phase1_steps=steps, prompts_per_step=4, num_generations=4, learning_rate=lr,
                      seed=0, save_steps=10**6, gradient_checkpointing=False)
    trainer = make_trainer(cfg, samples=toy["train"], model=model, processor=proc,
                           reward_funcs=[family_usage_reward(call_family)])
    trainer.train()
    return tool_rates(trainer.model, proc, toy["held"], temperature=TEMPERATURE, max_new_tokens=TOKENS)


def moved(before: dict, after: dict, up: str, down: str) -> tuple[float, float, float]:
    "(rise on `up`, fall on `down`, two standard errors of their sum) of the held-out tool-call rates."
    var = lambda r: r["rate"] * (1 - r["rate"]) / r["n"]
    se = math.sqrt(sum(var(r) for r in (before[up], after[up], before[down], after[down])))
    return after[up]["rate"] - before[up]["rate"], before[down]["rate"] - after[down]["rate"], 2 * se


def test_cold_start_rates_are_strictly_between_0_and_1(toy):
    for f in FAMILIES:
        r = toy["before"][f]
        assert 0.1 <= r["rate"] <= 0.9 and r["n"] == 64 and r["fmt"] >= 0.8, (f, r)


# Measured (this file, torch 1 thread, 2-core machine at load ~3, reproduced at load ~2-3): cold start direct 0.81,
# perspective 0.73 (64 rollouts each). Reward on direct: direct 0.81 -> 0.63, perspective 0.73 -> 0.47; reward on
# perspective: perspective 0.73 -> 0.78, direct 0.81 -> 0.83. Both arms move both families together (a shared drift); the
# family-specific part is the right way round in both (+0.08, +0.03) but inside sampling noise. 214 s wall, 157 s user.
# Diagnosis (a scratch script, the same toy and checks; held-out rates direct / perspective, 64 rollouts each):
# - This recipe's cold start calls on 0.94 / 0.90 of its own training questions (0.81 / 0.73 held out): the GRPO
#   groups are mostly all-call, `frac_reward_zero_std` is 0.75-1.0 on most steps, so one or two groups of 4 carry a
#   step's whole signal, often from one family; whatever that family's reward asks moves both families.
# - A cold start with a linearly decaying SFT rate (250 steps) sits near 0.5 on both (0.34 / 0.50, format 1.0), but
#   8 Adam steps at 3e-4 barely move it (sums +0.05, +0.09; training rollouts stay flat): the step budget is too small.
# - At 1e-3 (constant) the training rollouts separate by family (reward on perspective: direct 0/12, perspective 7/12 at
#   step 7) but the rewarded family's calls break (format 0.61, 0.27). At 1e-3 decaying linearly to 0 over the 8 steps,
#   seed 0 passes every check: reward on perspective direct 0.34 -> 0.05, perspective 0.50 -> 0.61 (sum 0.41 > 2se
#   0.22, format 1.0); reward on direct direct 0.34 -> 0.78, perspective 0.50 -> 0.36 (sum 0.58 > 0.23, format >= 0.69).
#   The same recipe fails both arms with seeds 1 and 2 (model, cold start and GRPO seeds): seed 1 (before 0.30 / 0.44)
#   calls rewarded on perspective raise both (direct +0.125, perspective +0.16), on direct lower both (-0.28, -0.36);
#   seed 2 (before 0.41 / 0.47) the same (+0.03, +0.11; -0.33, -0.34). 16 steps, 8 rollouts per question, or an Adam
#   warmup did not rescue seed 1. With every training question in every step (12 x 2 rollouts, balanced) and a 2-step
#   warmup, seeds 1 and 2 fail the same way round: calls rewarded on perspective raise both families (seed 1: direct
#   0.30 -> 0.67, perspective 0.44 -> 0.77), calls rewarded on direct lower both (0.30 -> 0.23, 0.44 -> 0.30).
# - Other recipes (seed 0): a 1 : 1 teacher (cold start 0.13 / 0.30), 12 prompts per step, a balanced 2 + 2 prompt
#   subset, 8e-4 constant (format 0.5-0.77), plain SGD (lr 1.0 collapses the format, 0.25 drifts), the restated words
#   without the colon (the decision token right after the family's word): each failed at least one arm.
# - Both families' questions with 2 images only (perspective ones carry 2-4): seed 1 fails the same way (calls
#   rewarded on perspective: direct 0.33 -> 0.63, perspective 0.41 -> 0.67; on direct: both to 0.02): not the images.
# So the per-family part is learnable here (one seed in three passes), but a shared move of the call decision as
# large rides on it and follows the reward on perspective. Every cold start calls more on held-out perspective
# (0.41-0.50) than on direct (0.30-0.41), so perspective's groups might carry more of a step's signal. Tested, and
# not the cause:
# - On its own training questions that cold start calls equally on both (seed 0: 0.52 / 0.48, seed 1: 0.44 / 0.42);
#   the gap shows on unseen scenes only (a third, validation split, seed 3, 8 questions a family: 0.31 / 0.50, 0.17
#   / 0.44, 0.28 / 0.47 for seeds 0-2). The teacher then differed by family in one thing only, how many of 6
#   trajectories per question call (same words, same turns), the ratio chosen on seed 0's validation rates (the
#   held-out split chose nothing); GRPO 1e-3 decaying to 0 over 8 steps, the test's criteria. Held-out before ->
#   after, direct / perspective:
# - 4 calls of 6 on direct, 2 of 6 on perspective: validation 0.19 / 0.20 (seed 0), 0.25 / 0.25 (seed 1), 0.14 /
#   0.28 (seed 2, not equalised). Seed 0 (before 0.22 / 0.23): reward on direct passes (0.97 / 0.02), on perspective
#   both fall (0.02 / 0.05). Seed 1 (0.17 / 0.25): reward on perspective raises both (0.31 / 0.36), on direct passes
#   (0.97 / 0.02). Seed 2 (0.17 / 0.27): reward on perspective raises both (0.61 / 0.70), on direct both fall to 0.
# - 5 of 6 on direct, 3 of 6 on perspective: validation 0.47 / 0.39, 0.64 / 0.31, 0.52 / 0.28. Reward on perspective
#   fails all three seeds (seed 0: 0.50 / 0.41 -> 0.05 / 0.38; seed 1: 0.66 / 0.23 -> 0.09 / 0.16; seed 2: 0.64 /
#   0.33 -> 0.86 / 0.86); reward on direct passes seeds 0 and 2 (0.72 / 0.02, 0.86 / 0.00), fails seed 1 (0.56 /
#   0.00, format 0.53 on perspective).
# With equal propensity (seeds 0 and 1 of the 4 : 2 teacher) the reward on direct passes and the reward on
# perspective fails, once with both families falling, once rising: the shared drift has no fixed sign and does not
# follow the family that calls more. 4 arms of 12 pass, all rewarding direct; no seed passes both arms, so the xfail
# stays.
# Strict: the day this passes, the mark must go.
MISSED = ("8 GRPO steps move both families' tool rates together; the reward's per-family direction is not yet "
          "separated from the shared drift on this budget")


@pytest.mark.slow   # two 8-step GRPO runs (~2 CPU minutes): outside the CI command until it passes
@pytest.mark.xfail(strict=True, reason=MISSED)
@pytest.mark.parametrize("call_family", FAMILIES)
def test_grpo_moves_the_tool_rate_the_way_the_reward_asks(toy, call_family):
    other = next(f for f in FAMILIES if f != call_family)
    after = grpo(toy, call_family, LR, STEPS)
    rise, fall, two_se = moved(toy["before"], after, call_family, other)
    print(f"reward calls on {call_family}: before {toy['before']}, after {after}")
    assert rise > 0 and fall > 0, (toy["before"], after)
    assert rise + fall > two_se, (rise, fall, two_se)   # the opposite moves together exceed sampling noise
    assert min(after[f]["fmt"] for f in FAMILIES) >= 0.6, after   # learnt by choosing, not by breaking the format


def test_zero_learning_rate_moves_nothing(toy):
    after = grpo(toy, "perspective", 0.0, 2)
    assert after == toy["before"], (toy["before"], after)
