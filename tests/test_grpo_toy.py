"""GRPO learns through the real path: a few steps of `rl.make_trainer` (TRL's GRPOTrainer, the agent loop, the
`reproject` simulator) on a two-family toy move the tool-call rates the way a plain reward function asks.

The small preset is cold-started (`sft`) on scripted trajectories that call on two of three rollouts of every
question, on both families alike; its held-out tool-call rate is strictly between 0 and 1 on each family. The reward
pays a well-formed trajectory that calls on one family and answers at once on the other, so its held-out mean moves by
half the *family contrast move* (`curriculum.contrast_move`): the rise of the rewarded family's call rate plus the
fall of the other's. Rates are measured on held-out questions (scenes no training question uses; a split that chose
nothing), sampled, with fixed seeds, before and after.

Asserted, in CI: the cold start's rates, and that a zero learning rate gives the same rates from the same seeds.
The learning claims are a confirmatory run fixed in this file before it ran (the five-seed run on lab seed 4 missed
its interval and a post hoc five more seeds had no control, so neither could settle it): ten seeds never run before
(model, cold start and GRPO; every seed run and counted), held-out questions from lab seed 5, which no earlier run
used, each seed with both arms (calls rewarded on `direct`, then on `perspective`: the flipped reward must flip the
move), 95 % Student t intervals over seeds. Claims: (1) the mean contrast move is above 0 with the format kept;
(2) it beats the shuffled-label control (`curriculum.shuffled_families`), paired by seed; (3) each family moves its own
way in every arm, predicted to fail (a strict xfail: it failed in 4 of 10 and 12 of 20 arms before). Measured:
(1) and (2) hold, (3) fails as predicted (figures below). They are marked
`slow` (about an hour on one core; split over processes with ASTRA_TOY_SEEDS and ASTRA_TOY_CACHE) and left out of the
CI command: `python -m pytest -m slow tests/test_grpo_toy.py` runs them. Figures below and in the curriculum
notebook's toy section."""
import json, math, os
from pathlib import Path
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
import pytest
import torch
from astra_wb.agent import AgentConfig
from astra_wb.curriculum import (contrast_move, family_usage_reward, shuffled_families, tool_rates, toy_family,
                                 toy_split, toy_teacher)
from astra_wb.rl import TrainConfig, make_trainer
from astra_wb.sft import SFTRunConfig, make_sft_trainer
from astra_wb.small_vlm import build_small_qwen3vl
from astra_wb.tiny_vlm import load_tiny

FAMILIES = ("direct", "perspective")
TEMPERATURE, TOKENS = 0.7, 56        # rollouts: sampling temperature, tokens per turn (a call turn is ~50)
TRAIN_N, HELD_N = 24, 8              # training (lab seed 1) and held-out questions of each family
STEPS, LR, KL = 16, 3e-4, 0.04       # GRPO optimiser steps, constant learning rate, KL coefficient of each arm
CALLS, ANSWERS = 2, 1                # teacher trajectories per question that call / answer at once
CHECK_SEED, CHECK_LAB_SEED = 0, 4    # the CI checks: seed 0, held-out questions of lab seed 4
# The confirmatory run, fixed in this file before it ran: ten seeds never run before, held-out questions of a lab
# split no earlier run used (lab seed 2 chose the recipe; lab seed 4 scored the five-seed run and the post hoc one).
SEEDS = tuple(range(10, 20))         # every seed is run and counted
HELD_LAB_SEED = 5
T95 = {4: 2.776, 9: 2.262}           # Student t, two-sided 95 %, by degrees of freedom (len(SEEDS) - 1)
RECIPE = f"n{TRAIN_N}-{HELD_N}-s{STEPS}-lr{LR}-kl{KL}-c{CALLS}{ANSWERS}-t{TEMPERATURE}-{TOKENS}"
# Optional: a folder where each arm's measured rates are kept and reused, so that the seeds can be split over
# processes (ASTRA_TOY_SEEDS=10-14 in one, 15-19 in another) and a last run over all seeds reads them back.
CACHE = os.environ.get("ASTRA_TOY_CACHE")
if os.environ.get("ASTRA_TOY_SEEDS"):
    _lo, _hi = map(int, os.environ["ASTRA_TOY_SEEDS"].split("-"))
    SEEDS = tuple(range(_lo, _hi + 1))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    "The training and held-out questions, a scratch folder, and a cache of cold starts by seed."
    torch.set_num_threads(1)
    train = toy_split(TRAIN_N, seed=1, pool=40 * TRAIN_N)
    held = {lab: toy_split(HELD_N, seed=lab, pool=240) for lab in (CHECK_LAB_SEED, HELD_LAB_SEED)}
    scenes = lambda qs: {q.meta["scene"]["id"] for q in qs}
    for qs in held.values():
        assert not scenes(train) & scenes(qs) and not {q.id for q in train} & {q.id for q in qs}
    return dict(tmp=tmp_path_factory.mktemp("toy"), train=train, held=held, cold={})


def cold_start(toy, seed: int, lab: int = HELD_LAB_SEED) -> dict:
    """The small preset cold-started on the teacher (rate decaying linearly), saved; its rates before GRPO on the
    held-out questions of lab seed `lab`."""
    if seed not in toy["cold"]:
        tmp = toy["tmp"]
        model, proc = load_tiny(build_small_qwen3vl(tmp / f"model{seed}", seed=seed))
        cfg = SFTRunConfig(model=str(tmp / f"model{seed}"), output_dir=str(tmp / f"sft{seed}"), max_steps=150,
                           batch_size=2, learning_rate=3e-3, lr_scheduler_type="linear", reasoning="full", seed=seed,
                           logging_steps=50, max_tool_rounds=1)
        make_sft_trainer(cfg, trajs=toy_teacher(toy["train"], CALLS, ANSWERS), model=model, processor=proc).train()
        model.save_pretrained(tmp / f"cold{seed}")
        proc.save_pretrained(tmp / f"cold{seed}")
        toy["cold"][seed] = dict(path=tmp / f"cold{seed}", before={})
    c = toy["cold"][seed]
    if lab not in c["before"]:
        model, proc = load_tiny(c["path"])
        c["before"][lab] = tool_rates(model, proc, toy["held"][lab], temperature=TEMPERATURE, max_new_tokens=TOKENS)
    return dict(path=c["path"], before=c["before"][lab])


def grpo(toy, seed: int, call_family: str, lr: float, steps: int, shuffled: bool = False,
         lab: int = HELD_LAB_SEED) -> dict:
    """GRPO from the seed's cold start with the reward for calls on `call_family` (with `shuffled`, on the questions
    dealt that family's label at random: the control); the rates after, on the held-out questions of lab seed `lab`."""
    model, proc = load_tiny(cold_start(toy, seed)["path"])
    agent = AgentConfig(temperature=TEMPERATURE, max_new_tokens=TOKENS, max_tool_rounds=1, max_turns=2)
    family_of = shuffled_families(toy["train"], seed=1000 + seed) if shuffled else toy_family
    cfg = TrainConfig(output_dir=str(toy["tmp"] / f"grpo{seed}-{call_family}-{lr}-{shuffled}"), simulator="reproject",
                      agent=agent, max_steps=steps, phase1_steps=steps, prompts_per_step=4, num_generations=4,
                      learning_rate=lr, kl_coef=KL, seed=seed, save_steps=10**6, gradient_checkpointing=False)
    trainer = make_trainer(cfg, samples=toy["train"], model=model, processor=proc,
                           reward_funcs=[family_usage_reward(call_family, family_of)])
    trainer.train()
    return tool_rates(trainer.model, proc, toy["held"][lab], temperature=TEMPERATURE, max_new_tokens=TOKENS)


def test_cold_start_rates_are_strictly_between_0_and_1(toy):
    for f in FAMILIES:
        r = cold_start(toy, CHECK_SEED, CHECK_LAB_SEED)["before"][f]
        assert 0.1 <= r["rate"] <= 0.9 and r["n"] == 64 and r["fmt"] >= 0.8, (f, r)


def test_zero_learning_rate_moves_nothing(toy):
    after = grpo(toy, CHECK_SEED, "perspective", 0.0, 2, lab=CHECK_LAB_SEED)
    assert after == cold_start(toy, CHECK_SEED, CHECK_LAB_SEED)["before"], after


def arm(toy, seed: int, fam: str, shuffled: bool) -> tuple:
    "(before, after) of one arm on the confirmatory held-out questions, kept in CACHE when one is given."
    name = f"{RECIPE}-held{HELD_LAB_SEED}-seed{seed}-{fam}-{'shuffled' if shuffled else 'real'}.json"
    path = Path(CACHE, name) if CACHE else None
    if path and path.exists():
        return tuple(json.loads(path.read_text()))
    out = cold_start(toy, seed)["before"], grpo(toy, seed, fam, LR, STEPS, shuffled)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out))
    return out


def run_arms(toy, shuffled: bool) -> list:
    "Every seed's two arms: (seed, rewarded family, before, after)."
    out = []
    for seed in SEEDS:
        for fam in FAMILIES:
            before, after = arm(toy, seed, fam, shuffled)
            print(f"{'shuffled ' * shuffled}seed {seed}, calls rewarded on {fam}: before {before}, after {after}")
            out.append((seed, fam, before, after))
    return out


def seed_means(arms) -> list:
    "Each seed's mean family contrast move over its two arms (the arms of a seed share its cold start)."
    per_seed = {}
    for seed, fam, before, after in arms:
        per_seed.setdefault(seed, []).append(sum(contrast_move(before, after, fam)))
    return [sum(v) / len(v) for v in per_seed.values()]


def interval(xs) -> tuple[float, float]:
    "Mean and the half-width of its two-sided 95 % Student t interval."
    m = sum(xs) / len(xs)
    return m, T95[len(xs) - 1] * math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


@pytest.fixture(scope="module")
def arms(toy):
    return run_arms(toy, shuffled=False)


@pytest.fixture(scope="module")
def control(toy):
    return run_arms(toy, shuffled=True)


@pytest.mark.slow   # ten cold starts and twenty 16-step GRPO runs (~35 minutes on one core)
def test_grpo_moves_the_family_contrast_the_way_the_reward_asks(arms):
    for seed, fam, before, after in arms:
        assert min(after[f]["fmt"] for f in FAMILIES) >= 0.6, (seed, fam, after)   # chosen, not broken
    means = seed_means(arms)
    m, half = interval(means)
    print(f"contrast move per seed {[round(x, 3) for x in means]}: mean {m:.3f} +- {half:.3f}")
    assert m - half > 0, (means, m, half)


@pytest.mark.slow   # twenty more 16-step GRPO runs from the same cold starts (~30 minutes)
def test_the_family_reward_beats_its_shuffled_control(arms, control):
    """The control: the same recipe with the reward's family labels dealt to the training questions at random
    (`shuffled_families`, the same counts). The family reward must move the held-out contrast more, paired by seed."""
    real, shuffled = seed_means(arms), seed_means(control)
    m, half = interval([a - b for a, b in zip(real, shuffled)])
    print(f"shuffled contrast move per seed {[round(x, 3) for x in shuffled]}: {interval(shuffled)}; "
          f"real minus shuffled {m:.3f} +- {half:.3f}")
    assert m - half > 0, (real, shuffled, m, half)


# Earlier: seeds 0-4, held-out lab seed 4 (`python -m pytest -m slow tests/test_grpo_toy.py -rA -s`, 29 min wall, the split
# scored once): held-out call rates direct / perspective, before -> after; contrast move of each arm.
#   seed 0: 0.83 / 0.81; reward on direct -> 0.42 / 0.56 (-0.16), on perspective -> 0.34 / 0.69 (+0.36)
#   seed 1: 0.61 / 0.69; -> 0.98 / 0.31 (+0.75); -> 0.39 / 0.84 (+0.38)
#   seed 2: 0.38 / 0.50; -> 0.67 / 0.22 (+0.58); -> 0.14 / 0.81 (+0.55)
#   seed 3: 0.17 / 0.28; -> 0.00 / 0.00 (+0.11); -> 0.05 / 0.30 (+0.14)
#   seed 4: 0.41 / 0.56; -> 0.62 / 0.45 (+0.33); -> 0.05 / 0.11 (-0.09)
# Per-seed means +0.10, +0.56, +0.56, +0.12, +0.12: +0.294 +- 0.305. Shuffled control per seed +0.09, +0.16, +0.05,
# -0.01, +0.04: +0.067 +- 0.081; paired gain +0.227 +- 0.272. Each family its own way in 6 of 10 arms; format >= 0.69.
# On the validation split (lab seed 2, where the recipe was chosen): +0.350 +- 0.305, control +0.070 +- 0.058.
# Post hoc (run after this miss, no control, same split): seeds 5-9 +0.30, +0.45, +0.13, +0.15, +0.40; over ten seeds
# +0.291 +- 0.136, positive in 17 of 20 arms, each family its own way in 8 of 20.
# The confirmatory run (seeds 10-19, held-out lab seed 5; fixed in commit "GRPO toy: pre-registered confirmatory run"
# before it ran; seeds 10-14 and 15-19 in two processes with ASTRA_TOY_CACHE, 29.5 min wall each, both cores, then
# `ASTRA_TOY_CACHE=... python -m pytest -m slow tests/test_grpo_toy.py -rA -s` over all ten read them: 2 passed,
# 1 xfailed). Held-out call rates direct / perspective before; after each arm (contrast move); shuffled control moves:
#   seed 10: 0.33 / 0.47; direct -> 0.23 / 0.27 (+0.11); perspective -> 0.77 / 0.83 (-0.08); control +0.02, +0.05
#   seed 11: 0.34 / 0.47; -> 0.88 / 0.30 (+0.70); -> 0.14 / 0.72 (+0.45); control +0.22, +0.00
#   seed 12: 0.38 / 0.52; -> 0.80 / 0.19 (+0.75); -> 0.20 / 0.91 (+0.56); control -0.03, -0.05
#   seed 13: 0.56 / 0.67; -> 0.69 / 0.20 (+0.59); -> 0.28 / 0.45 (+0.06); control -0.17, +0.02
#   seed 14: 0.22 / 0.36; -> 0.17 / 0.22 (+0.09); -> 0.12 / 0.23 (-0.03); control +0.03, -0.02
#   seed 15: 0.41 / 0.66; -> 0.64 / 0.58 (+0.31); -> 0.39 / 0.50 (-0.14); control +0.12, -0.36
#   seed 16: 0.34 / 0.39; -> 0.00 / 0.00 (+0.05); -> 0.09 / 0.23 (+0.09); control +0.12, +0.03
#   seed 17: 0.22 / 0.38; -> 0.11 / 0.17 (+0.09); -> 0.42 / 0.44 (-0.14); control +0.12, -0.02
#   seed 18: 0.47 / 0.64; -> 0.64 / 0.55 (+0.27); -> 0.22 / 0.67 (+0.28); control +0.08, +0.00
#   seed 19: 0.38 / 0.50; -> 0.53 / 0.12 (+0.53); -> 0.31 / 0.77 (+0.33); control -0.14, +0.22
# (1) contrast move +0.245 +- 0.177 [0.068, 0.422], positive in 16 of 20 arms, format >= 0.625 in every arm;
# (2) control +0.013 +- 0.051, paired gain +0.232 +- 0.182 [0.050, 0.414]; (3) each family its own way in 10 of 20.
# Neither half of five seeds alone cleared 0 (seeds 10-14: +0.322 +- 0.370; 15-19: +0.167 +- 0.226).
MISSED = ("a shared move of both families' call rates, of either sign, rides on the family contrast in some arms")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=MISSED)
def test_each_family_moves_its_own_way_in_every_arm(arms):
    moves = [(seed, fam, contrast_move(before, after, fam)) for seed, fam, before, after in arms]
    bad = [m for m in moves if min(m[2]) <= 0]
    assert not bad, bad
