"""GRPO with the world simulator in the loop on the tiny random Qwen3-VL (CPU): both phases, masking, images,
the frozen vision tower, two processes (gloo), and resume equivalence after a kill."""
import json, math, os, subprocess, sys
from pathlib import Path
import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
torch = pytest.importorskip("torch")
import rl_worker  # noqa: E402
from astra_wb.rl import step_logs  # noqa: E402

ROOT = Path(__file__).parents[1]


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def two_phase_run(tmp_path_factory):
    "Two GRPO steps (Phase 1, then Phase 2) with half the rows scripted; captures what TRL's loss saw."
    trainer, cfg = rl_worker.make(tmp_path_factory.mktemp("two-phase"), max_steps=2, phase1_steps=1, num_generations=4)
    before, captured = _snapshot(trainer.model), []
    inner = trainer._generate_and_score_completions

    def capture(inputs):
        out = inner(inputs)
        captured.append(dict(out=out, last=trainer.astra.last))
        return out
    trainer._generate_and_score_completions = capture
    trainer.train()
    return trainer, before, captured


def test_losses_finite_and_phases_logged(two_phase_run):
    trainer, _, _ = two_phase_run
    logs = step_logs(trainer)
    assert [r["astra/phase"] for r in logs] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in logs)
    assert any(r["loss"] != 0 for r in logs)               # the scripted rows make the group rewards differ
    for key in ("reward", "rewards/em/mean", "rewards/fmt/mean", "rewards/tool_use/mean", "rewards/gain/mean",
                "astra/exact_match", "astra/format_valid", "astra/tool_call_rate", "astra/calls_per_row",
                "astra/invalid_turns_per_row"):
        assert all(key in r for r in logs), key
    assert "astra/direct_exact_match" in logs[1] and "astra/direct_exact_match" not in logs[0]
    assert logs[0]["astra/tool_call_rate"] == 0.5        # exactly the scripted rows call the simulator


def test_parameters_change_but_vision_tower_frozen(two_phase_run):
    trainer, before, _ = two_phase_run
    after = dict(trainer.model.named_parameters())
    vision = [n for n in before if ".visual." in f".{n}"]
    language = [n for n in before if n not in vision]
    assert vision and all(not after[n].requires_grad for n in vision)
    assert all(torch.equal(before[n], after[n].detach()) for n in vision)
    changed = [n for n in language if not torch.equal(before[n], after[n].detach())]
    assert len(changed) > len(language) // 2, changed


def test_tool_response_tokens_masked_on_known_trajectory(two_phase_run):
    trainer, _, captured = two_phase_run
    tok = trainer.processing_class.tokenizer
    call = trainer.astra.policy.forced.call_text
    for step in captured:
        last, out = step["last"], step["out"]
        rows = [i for i, t in enumerate(last["trajectories"]) if t.turns and t.turns[0].text == call]
        assert rows, "no scripted trajectory in the batch"
        for i in rows:
            traj, tt = last["trajectories"][i], last["tokens"][i]
            assert traj.n_tool_calls == 1 and traj.correct and traj.valid
            model_part = tok.decode([t for t, m in zip(tt["completion_ids"], tt["env_mask"]) if m])
            env_part = tok.decode([t for t, m in zip(tt["completion_ids"], tt["env_mask"]) if not m])
            assert model_part == traj.turns[0].text + tok.eos_token + traj.turns[1].text + tok.eos_token
            assert traj.turns[0].observation.provenance() in env_part and "<tool_response>" in env_part
            assert "<|image_pad|>" in env_part and "<|image_pad|>" not in model_part
            assert len(tt["images"]) == len(traj.sample.images) + 1
            # TRL's loss mask is our env_mask: zero exactly on the tool response
            n = len(tt["completion_ids"])
            assert out["tool_mask"][i, :n].tolist() == tt["env_mask"]


def test_imagined_images_enter_the_forward_pass(two_phase_run):
    trainer, _, captured = two_phase_run
    merge = trainer.processing_class.image_processor.merge_size ** 2
    for step in captured:
        out, toks = step["out"], step["last"]["tokens"]
        n_images = sum(len(t["images"]) for t in toks)
        assert out["num_images"] == [len(t["images"]) for t in toks]
        assert out["image_grid_thw"].shape[0] == n_images          # not dropped by TRL's mismatch guard
        assert int(out["mm_token_type_ids"].sum()) == int(out["image_grid_thw"].prod(-1).sum()) // merge
        assert any(len(t["images"]) > len(tr.sample.images) for t, tr in zip(toks, step["last"]["trajectories"]))


def test_phase2_direct_baseline_not_in_update(two_phase_run):
    _, _, captured = two_phase_run
    p1, p2 = captured[0]["last"], captured[1]["last"]
    assert p1["baselines"] == {} and p1["e_direct"] == [None] * len(p1["trajectories"])
    base = p2["baselines"]
    assert set(base) == {t.sample.id for t in p2["trajectories"]}      # one per prompt group
    assert all(b.mode == "direct" and b.n_tool_calls == 0 for b in base.values())
    assert p2["e_direct"] == [float(bool(base[t.sample.id].correct)) for t in p2["trajectories"]]
    assert captured[1]["out"]["completion_ids"].shape[0] == len(p2["trajectories"])   # rows = policy rollouts only


def test_two_processes_keep_identical_weights(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "rl_worker.py"), str(tmp_path), "1", "--dump-params"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"params.rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["sample_ids"] != r1["sample_ids"]                        # each process rolled out its own prompts
    assert r0["before"] == r1["before"] and r0["after"] == r1["after"]  # DDP kept the ranks in step
    assert r0["after"] != r0["before"]


def _rollout_order(out: Path) -> dict:
    "step -> sample ids of its rollouts (the last record of a step wins: a killed step is redone on resume)."
    order = {}
    for line in (out / "rollouts.rank0.jsonl").read_text().splitlines():
        d = json.loads(line); order[d["step"]] = [r["sample_id"] for r in d["rows"]]
    return order


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    "Killed at the end of step 4 with a checkpoint at step 3 (mid-epoch: 2 steps per epoch), resumed to step 4."
    killed = tmp_path / "killed"
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "rl_worker.py"), str(killed), "4", "--kill-at", "4", "--save-steps", "3"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == -9, p.stderr[-3000:]                        # SIGKILL at the end of step 4
    assert (killed / "checkpoint-3").is_dir() and not (killed / "checkpoint-4").exists()
    resumed, _ = rl_worker.make(killed, 4, resume=True, save_steps=3)
    from transformers.trainer_utils import get_last_checkpoint
    resumed.train(resume_from_checkpoint=get_last_checkpoint(str(killed)))
    straight, _ = rl_worker.make(tmp_path / "straight", 4, save_steps=3)
    straight.train()
    a, b = step_logs(resumed), step_logs(straight)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    assert _rollout_order(killed) == _rollout_order(tmp_path / "straight")   # same prompts, same order, every step
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r["reward"] for r in a] == [r["reward"] for r in b]
    assert any(r["loss"] != 0 for r in b)
    assert all(torch.equal(x, y) for x, y in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()))


def test_installed_trl_is_within_the_pinned_range():
    "rl overrides private GRPOTrainer members: pyproject bounds trl above and below, and the installed trl is inside."
    import tomllib
    from importlib.metadata import version
    from packaging.requirements import Requirement
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    req = next(Requirement(d) for d in deps if Requirement(d).name == "trl")
    assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"trl has no upper bound: {req}"
    assert version("trl") in req.specifier, f"installed trl {version('trl')} is outside {req.specifier}"


def test_greedy_rollouts_train_with_a_finite_loss(tmp_path):
    """Temperature 0 (greedy rollouts, as the equal-work benchmark runs): the loss scores the sampled tokens with
    unscaled logits instead of dividing them by zero."""
    from astra_wb.tiny_vlm import cached_tiny_qwen3vl, load_tiny
    from astra_wb.rl import TrainConfig, make_trainer
    from astra_wb.simulators import get_simulator
    from astra_wb.synthqa import generate_bench
    samples = generate_bench(4, seed=0)
    model, proc = load_tiny(cached_tiny_qwen3vl())
    model.train()
    before = _snapshot(model)
    cfg = TrainConfig(output_dir=str(tmp_path), max_steps=1, phase1_steps=1, prompts_per_step=2, num_generations=2,
                      max_turns=2, max_new_tokens=8, learning_rate=1e-3, save_steps=10, temperature=0.0)
    trainer = make_trainer(cfg, samples=samples, model=model, processor=proc, simulator=get_simulator("oracle"),
                           forced=rl_worker.scripted(samples))
    trainer.train()
    logs = step_logs(trainer)
    assert trainer.args.temperature == 1.0
    assert logs[0]["reward_std"] > 0   # scripted and greedy rows differ: the loss has advantages to weigh
    assert math.isfinite(logs[0]["loss"]) and math.isfinite(logs[0]["grad_norm"])
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if p.requires_grad)


def test_a_step_with_nonfinite_gradients_is_skipped_and_the_run_goes_on(tmp_path):
    """A NaN planted in one gradient at the first backward pass (what bf16 on a GPU produced): that step leaves
    every weight as it was and is recorded; the next step trains, and the weights stay finite."""
    from transformers import TrainerCallback
    snaps = []

    class Snap(TrainerCallback):   # the weights after each optimiser step
        def on_step_end(self, args, state, control, model=None, **kw):
            snaps.append(_snapshot(model))

    trainer, _ = rl_worker.make(tmp_path, max_steps=2, save_steps=10, callbacks=[Snap()])
    before = _snapshot(trainer.model)
    name, target = next((n, p) for n, p in trainer.model.named_parameters() if p.requires_grad and "layers.0." in n)
    backwards = []
    target.register_hook(lambda g: g * float("nan") if not backwards.append(1) and len(backwards) == 1 else g)
    trainer.train()
    logs = step_logs(trainer)
    assert len(backwards) == 2 and [r["astra/skipped_nonfinite"] for r in logs] == [1.0, 0.0]
    assert all(torch.equal(before[n], snaps[0][n]) for n in before)              # step 1 changed nothing
    assert any(not torch.equal(snaps[0][n], snaps[1][n]) for n in before)        # step 2 trained
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    rec = [json.loads(line) for line in (tmp_path / "nonfinite_steps.jsonl").read_text().splitlines()]
    assert rec == [dict(step=1, modules={".".join(name.split(".")[:3]): 1})]
