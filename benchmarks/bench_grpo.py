"""Seconds per GRPO step: astra-wb's agent loop inside GRPOTrainer vs TRL's built-in tool loop, on equal work.

Equal work means: the same model, data, sampling, group size, tool rounds (2) and turns (3), and a model
that really calls the simulator in both loops. The model is the `small` Qwen3-VL preset (1 M parameters),
cold-started with `astra_wb.sft` (TRL's SFTTrainer) on expert trajectories that call the simulator
twice and then answer (the expert in Forced(2) mode, shown the agentic system prompt), cached after the first
run. Both loops get the agentic prompt; ours caps each turn at --max-new-tokens, TRL's loop caps the whole
completion (tool responses included) at 3 x that plus the tool responses' tokens, so neither cap binds
before the model's own end of turn. TRL's loop gets the simulator through `environment_factory` (an
environment whose public method is the `world_simulator` tool), TRL's built-in multi-turn tool path.

Printed per loop: median seconds per step (warm-up step excluded), tool calls per row, completion tokens per
row (model and tool-response tokens together, as TRL counts them), and the process's CPU seconds; runs
alternate (ours, TRL, ours, ...) so machine load affects both. The benchmark exits non-zero when either loop
makes fewer than --min-calls calls per row: then the two loops are not doing the work being compared.

python benchmarks/bench_grpo.py [--steps 3] [--rounds 2] [--max-new-tokens 96] [--temperature 0.3]
"""
import argparse, copy, os, statistics, sys, tempfile, time
from pathlib import Path
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")




def fitted_caller(cache: Path, steps: int = 150):
    "The small model after SFT on expert trajectories that call the simulator twice (built once, cached)."
    from astra_wb.small_vlm import build_small_qwen3vl
    from astra_wb.tiny_vlm import load_tiny
    from astra_wb.sft import SFTRunConfig, make_sft_trainer
    from astra_wb.agent import rollout, AgentConfig
    from astra_wb.expert import ExpertPolicy
    from astra_wb.synthqa import generate_bench
    final = cache / "final"
    if (final / "config.json").exists(): return load_tiny(final)
    model, proc = load_tiny(build_small_qwen3vl(cache / "base", seed=0))
    teacher = rollout(generate_bench(24, seed=11), ExpertPolicy(), "reproject", AgentConfig(mode="forced", forced_k=2, max_tool_rounds=2))
    for t in teacher: t.mode, t.forced_k = "agentic", 0   # shown the agentic prompt: the model calls twice unprompted
    cfg = SFTRunConfig(model=str(cache / "base"), output_dir=str(cache / "sft"), max_steps=steps, batch_size=2,
                       learning_rate=3e-3, reasoning="last", max_tool_rounds=2, logging_steps=50)
    t0 = time.perf_counter()
    tr = make_sft_trainer(cfg, trajs=teacher, model=model, processor=proc); tr.train()
    print(f"cold start of the caller: {steps} SFT steps in {time.perf_counter() - t0:.0f} s")
    model.save_pretrained(final); proc.save_pretrained(final)
    return load_tiny(final)


def completion_tokens(store):
    "A zero reward that records each row's completion length (model and tool tokens) for the report."
    def tokens(prompts, completions, completion_ids, **kw):
        store.extend(len(c) for c in completion_ids)
        return [0.0] * len(completions)
    return tokens


class StepTimer:
    def __init__(self): self.times, self.t0 = [], None
    def callback(self):
        from transformers import TrainerCallback
        timer = self
        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw): timer.t0 = time.perf_counter()
            def on_step_end(self, args, state, control, **kw): timer.times.append(time.perf_counter() - timer.t0)
        return CB()


def ours(model, processor, samples, steps, out, a):
    from astra_wb.agent import AgentConfig
    from astra_wb.rl import TrainConfig, make_trainer
    from astra_wb.simulators import get_simulator
    agent = AgentConfig(max_tool_rounds=2, max_turns=3, max_new_tokens=a.max_new_tokens, temperature=a.temperature)
    cfg = TrainConfig(output_dir=out, max_steps=steps, phase1_steps=steps, prompts_per_step=4, num_generations=4, agent=agent,
                      learning_rate=1e-6, save_steps=10_000, gradient_checkpointing=False)
    timer, lengths = StepTimer(), []
    tr = make_trainer(cfg, samples=samples, model=model, processor=processor, simulator=get_simulator("oracle"), callbacks=[timer.callback()])
    step = tr._generate_and_score_completions
    def recorded(inputs):   # the rollout's completion tokens (model and tool tokens), as TRL's loop counts them
        out = step(inputs)
        lengths.extend(len(t["completion_ids"]) for t in tr.astra.last["tokens"])
        return out
    tr._generate_and_score_completions = recorded
    tr.train()
    logs = [r for r in tr.state.log_history if "loss" in r]
    return timer.times, sum(r["astra/calls_per_row"] for r in logs) / len(logs), sum(lengths) / max(1, len(lengths))


def vision_ids(processor):
    from astra_wb.hf import vision_token_ids
    return vision_token_ids(processor)


def trl_builtin(model, processor, samples, steps, out, a):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    from astra_wb.protocol import Trajectory, build_messages, extract_answer, Observation
    from astra_wb.motion import Motion
    from astra_wb.simulators import get_simulator
    by_id, sim = {s.id: s for s in samples}, get_simulator("oracle")

    class ImagineEnv:
        def reset(self, sample_id=None, **kw):
            self.sample, self.observations = by_id[sample_id], []
            return None

        def world_simulator(self, reference_image: int, motion_type: str, value: float) -> list:
            """Imagine the view after a camera motion from one of the images so far.

            Args:
                reference_image: 1-based number of the image whose viewpoint the motion starts from.
                motion_type: move_forward, move_backward, move_left, move_right, move_up, move_down, turn_left, turn_right, pitch_up or pitch_down.
                value: meters for moves, degrees for turns and pitch.
            """
            obs = sim.imagine(self.sample, self.observations, int(reference_image), Motion.from_tool(motion_type, value).check())
            obs.index = len(self.sample.images) + len(self.observations) + 1
            self.observations.append(obs)
            return [{"type": "text", "text": obs.provenance()}, {"type": "image", "image": obs.image}]

    rows = [{"prompt": [{"role": "system", "content": build_messages(Trajectory(s), 2)[0]["content"]},
                        {"role": "user", "content": s.meta.get("prompt") or s.prompt_text()}],
             "images": list(s.images), "sample_id": s.id, "gold": s.answer} for s in samples]   # TRL puts the images first

    def em(prompts, completions, gold, **kw):
        return [float(extract_answer(c[-1]["content"] if isinstance(c[-1].get("content"), str) else "") == g) for c, g in zip(completions, gold)]

    lengths = []
    args = GRPOConfig(output_dir=out, per_device_train_batch_size=16, num_generations=4, max_steps=steps, learning_rate=1e-6,
                      max_completion_length=3 * a.max_new_tokens + 2 * 40, max_tool_calling_iterations=2,
                      temperature=a.temperature, gradient_checkpointing=False,
                      save_steps=10_000, report_to=[], remove_unused_columns=False, use_cpu=True, logging_steps=1,
                      lr_scheduler_type="constant", epsilon=0.2, epsilon_high=0.28, beta=0.0, seed=0,
                      generation_kwargs={"suppress_tokens": vision_ids(processor)})   # as our TokenPolicy does
    timer = StepTimer()
    tr = GRPOTrainer(model=model, reward_funcs=[em, completion_tokens(lengths)], args=args, train_dataset=Dataset.from_list(rows),
                     processing_class=processor, environment_factory=ImagineEnv, callbacks=[timer.callback()])
    try: tr.train()
    except Exception as e:   # TRL 1.16's multimodal tool loop can fail when every call of a turn errors (no tool image)
        print(f"TRL built-in loop failed after {len(timer.times)} steps: {type(e).__name__}: {e}")
        if len(timer.times) < 2: raise
    logs = [r for r in tr.state.log_history if "loss" in r] or [{}]
    return timer.times, sum(r.get("tools/call_frequency", 0) for r in logs) / len(logs), sum(lengths) / max(1, len(lengths))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--temperature", type=float, default=0.3)
    ap.add_argument("--min-calls", type=float, default=1.0)
    a = ap.parse_args(argv)
    import torch
    from astra_wb.synthqa import generate_bench
    torch.manual_seed(0); torch.set_num_threads(1)
    samples = generate_bench(4, seed=0)
    cache = Path(os.environ.get("ASTRA_WB_CACHE") or Path.home() / ".cache" / "astra-wb") / "bench-grpo-caller-v2"
    base, processor = fitted_caller(cache)
    state = copy.deepcopy(base.state_dict())
    names = ("astra-wb agent loop", "TRL built-in tool loop")
    res, calls, toks, cpu = ({k: [] for k in names} for _ in range(4))
    for r in range(a.rounds):
        for name, fn in zip(names, (ours, trl_builtin)):
            model = copy.deepcopy(base); model.load_state_dict(state)
            c0 = time.process_time()
            times, c, n = fn(model, processor, samples, a.steps, tempfile.mkdtemp(), a)
            cpu[name].append(time.process_time() - c0); res[name] += times[1:]; calls[name].append(c); toks[name].append(n)
            print(f"round {r}: {name}: step seconds {[round(t, 2) for t in times]}, calls/row {c:.2f}, completion tokens/row {n:.0f}")
    med = {k: statistics.median(v) for k, v in res.items()}
    print("\n| loop | median s/step | tool calls per row | completion tokens per row | CPU s per run |\n|---|---|---|---|---|")
    for k in names:
        print(f"| {k} | {med[k]:.2f} | {statistics.mean(calls[k]):.2f} | {statistics.mean(toks[k]):.0f} | {statistics.mean(cpu[k]):.1f} |")
    ratio = med[names[0]] / med[names[1]]
    print(f"\nratio astra-wb / TRL built-in: {ratio:.2f}x (goal <= 1.1x); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    low = [k for k in names if statistics.mean(calls[k]) < a.min_calls]
    if low:
        print(f"NOT EQUAL WORK: {', '.join(low)} made fewer than {a.min_calls} tool calls per row", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
