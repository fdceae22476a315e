"""Seconds per GRPO step: astra-wb's agent loop inside GRPOTrainer vs TRL's built-in tool loop, on equal work.

Equal work means, in both loops:
- the same model: the `small` Qwen3-VL preset cold-started with `astra_wb.sft` (TRL's SFTTrainer) on expert
  trajectories that call the simulator twice and then answer (built once, cached), float32, vision tower frozen;
- the same first prompt, token for token: the agentic system prompt, the tool schema of `protocol.TOOLS` and the
  user message with its "Image k:" labels (checked: the run refuses a ratio when the prompt ids differ);
- the same caps: --max-new-tokens per assistant turn (TRL: `generation_kwargs["max_new_tokens"]`; its completion
  cap is set so that it never binds), --tool-rounds simulator calls and one turn more;
- the same sampling: greedy by default, so both loops decode the same tokens; the same group size, data, oracle
  simulator, optimiser and loss (dapo, Clip-Higher, no KL).
TRL's loop gets the simulator through `environment_factory` (an environment whose public method is the
`world_simulator` tool), TRL 1.16's built-in multi-turn tool path (`GRPOTrainer._tool_call_loop`).

Printed per loop: each step's wall and process CPU seconds, tool calls, assistant turns and model tokens per row;
then medians over the counted steps (the first step of each run is a warm-up). Runs alternate (ours, TRL, ours,
...) so machine load affects both. No ratio is printed, and the exit status is 1, when either loop makes fewer
than --min-calls calls per row, or calls, turns or model tokens per row differ by more than --max-diff.

python benchmarks/bench_grpo.py [--steps 4] [--rounds 2] [--max-new-tokens 96] [--temperature 0]
"""
import argparse, copy, os, statistics, sys, tempfile, time
from contextlib import contextmanager
from pathlib import Path
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def caller_cache() -> Path:
    "Where the fitted caller is cached (`$ASTRA_WB_CACHE`, else ~/.cache/astra-wb)."
    return Path(os.environ.get("ASTRA_WB_CACHE") or Path.home() / ".cache" / "astra-wb") / "bench-grpo-caller-v2"


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


class StepTimer:
    "Wall and process CPU seconds of each optimiser step."
    def __init__(self):
        self.times, self.cpu, self.t0, self.c0 = [], [], None, None

    def callback(self):
        from transformers import TrainerCallback
        timer = self

        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                timer.t0, timer.c0 = time.perf_counter(), time.process_time()

            def on_step_end(self, args, state, control, **kw):
                timer.times.append(time.perf_counter() - timer.t0)
                timer.cpu.append(time.process_time() - timer.c0)
        return CB()


def agent_config(a):
    from astra_wb.agent import AgentConfig
    return AgentConfig(max_tool_rounds=a.tool_rounds, max_turns=a.tool_rounds + 1, max_new_tokens=a.max_new_tokens,
                       temperature=a.temperature)


def ours(model, processor, samples, out, a):
    "Our agent loop inside GRPOTrainer: per-step times, the step logs and each sample's first prompt ids."
    from astra_wb.rl import TrainConfig, make_trainer
    from astra_wb.simulators import get_simulator
    cfg = TrainConfig(output_dir=out, max_steps=a.steps, phase1_steps=a.steps, prompts_per_step=4, num_generations=4,
                      agent=agent_config(a), learning_rate=1e-6, save_steps=10_000, gradient_checkpointing=False)
    timer, prompts = StepTimer(), {}
    tr = make_trainer(cfg, samples=samples, model=model, processor=processor, simulator=get_simulator(a.simulator),
                      callbacks=[timer.callback()])
    step = tr._generate_and_score_completions

    def recorded(inputs):
        res = step(inputs)
        for t, tok in zip(tr.astra.last["trajectories"], tr.astra.last["tokens"]):
            prompts.setdefault(t.sample.id, tok["prompt_ids"])
        return res
    tr._generate_and_score_completions = recorded
    tr.train()
    logs = [r for r in tr.state.log_history if "loss" in r]
    return timer, [dict(calls=r["astra/calls_per_row"], turns=r["astra/turns_per_row"],
                        model_tokens=r["completions/mean_length"]) for r in logs], prompts


@contextmanager
def rendered_as(schema: dict):
    """Render the `world_simulator` tool with `schema` (the workbench's TOOLS entry) instead of the one transformers
    derives from the method's docstring, so both loops show the model the same prompt."""
    from transformers.utils import chat_template_utils as ctu
    from transformers.utils.chat_parsing import response_parser as rp
    old = ctu.get_json_schema, rp.get_json_schema
    def schema_of(fn):
        return schema if getattr(fn, "__name__", "") == schema["function"]["name"] else old[0](fn)
    ctu.get_json_schema = rp.get_json_schema = schema_of
    try:
        yield
    finally:
        ctu.get_json_schema, rp.get_json_schema = old


def trl_rows(samples, tool_rounds: int) -> list[dict]:
    """The same conversation our loop starts from: the agentic system prompt and the user message with its
    'Image k:' labels, the images as placeholders that TRL fills from the `images` column in order."""
    from astra_wb.protocol import Trajectory, build_messages
    rows = []
    for s in samples:
        system, user = build_messages(Trajectory(s, mode="agentic"), tool_rounds)
        content = [{"type": "image"} if p["type"] == "image" else {"type": "text", "text": p["text"]}
                   for p in user["content"]]
        system = {"role": "system", "content": [{"type": "text", "text": system["content"]}]}   # one arrow type
        rows.append({"prompt": [system, {"role": "user", "content": content}], "images": list(s.images),
                     "sample_id": s.id})
    return rows


def imagine_env(samples, sim):
    "An environment class for TRL's `environment_factory`: its public method `world_simulator` is the tool."
    from astra_wb.motion import Motion
    by_id = {s.id: s for s in samples}

    class ImagineEnv:
        def reset(self, sample_id=None, **kw):
            self.sample, self.observations = by_id[sample_id], []
            return None

        def world_simulator(self, reference_image: int, motion_type: str, value: float) -> list:
            """Imagine the view after a camera motion from one of the images so far.

            Args:
                reference_image: 1-based number of the image whose viewpoint the motion starts from.
                motion_type: the camera motion.
                value: meters for moves, degrees for turns and pitch.
            """
            obs = sim.imagine(self.sample, self.observations, int(reference_image),
                              Motion.from_tool(motion_type, value).check())
            obs.index = len(self.sample.images) + len(self.observations) + 1
            self.observations.append(obs)
            # the order of our loop's tool message: the provenance line, then the image
            return [{"type": "text", "text": obs.provenance()}, {"type": "image", "image": obs.image}]
    return ImagineEnv


def trl_builtin(model, processor, samples, out, a):
    "TRL's own multi-turn tool loop (`environment_factory`) on the same prompts, caps and turns."
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    from astra_wb.hf import vision_token_ids
    from astra_wb.protocol import TOOL_SCHEMA
    from astra_wb.rl import _freeze
    from astra_wb.simulators import get_simulator
    turns, prompts = [], {}

    def count_turns(completions, **kw):   # a zero reward that records each row's assistant turns
        turns.extend(sum(m["role"] == "assistant" for m in c) for c in completions)
        return [0.0] * len(completions)
    # a per-turn cap like ours (generation_kwargs' max_new_tokens); the completion cap only bounds the whole rollout
    gen = {"suppress_tokens": vision_token_ids(processor), "max_new_tokens": a.max_new_tokens,
           "do_sample": a.temperature > 0}
    args = GRPOConfig(output_dir=out, per_device_train_batch_size=16, num_generations=4, max_steps=a.steps,
                      learning_rate=1e-6,
                      max_completion_length=(a.tool_rounds + 1) * a.max_new_tokens + 200 * a.tool_rounds,
                      max_tool_calling_iterations=a.tool_rounds, temperature=a.temperature or 1.0,
                      gradient_checkpointing=False, save_steps=10_000, report_to=[], remove_unused_columns=False,
                      use_cpu=True, bf16=False, logging_steps=1, lr_scheduler_type="constant", epsilon=0.2,
                      epsilon_high=0.28,
                      beta=0.0, seed=0, generation_kwargs=gen)
    timer = StepTimer()
    _freeze(model)   # ours trains with the vision tower frozen (TrainConfig.freeze_vision): the same parameters here
    with rendered_as(TOOL_SCHEMA):
        tr = GRPOTrainer(model=model, reward_funcs=[count_turns], args=args,
                         train_dataset=Dataset.from_list(trl_rows(samples, a.tool_rounds)),
                         processing_class=processor,
                         environment_factory=imagine_env(samples, get_simulator(a.simulator)),
                         callbacks=[timer.callback()])
        tokenize = tr._tokenize_prompts

        def recorded(prompts_):
            res = tokenize(prompts_)
            for env, ids in zip(tr.environments, res[0]):
                prompts.setdefault(env.sample.id, list(ids))
            return res
        tr._tokenize_prompts = recorded
        tr.train()
    logs = [r for r in tr.state.log_history if "loss" in r]
    rows = [dict(calls=r.get("tools/call_frequency", 0.0), model_tokens=r["completions/mean_length"]) for r in logs]
    for k, r in enumerate(rows):
        r["turns"] = statistics.mean(turns[16 * k:16 * (k + 1)])
    return timer, rows, prompts


def equal_work(rows: dict, prompts: dict, a) -> list[str]:
    "Why the two loops did not do equal work (empty: they did)."
    names = list(rows)
    why = []
    if prompts[names[0]] != prompts[names[1]]:
        diff = [k for k in prompts[names[0]] if prompts[names[0]][k] != prompts[names[1]].get(k)]
        why.append(f"the first prompts differ in tokens for {len(diff)} samples")
    fields = ("calls", "turns", "model_tokens")
    mean = {k: {f: statistics.mean(r[f] for r in v) for f in fields} for k, v in rows.items()}
    for k in names:
        if mean[k]["calls"] < a.min_calls:
            why.append(f"{k} made {mean[k]['calls']:.2f} tool calls per row (< {a.min_calls})")
    for f in ("calls", "turns", "model_tokens"):
        x, y = mean[names[0]][f], mean[names[1]][f]
        if abs(x - y) > a.max_diff * max(x, y):
            why.append(f"{f} per row differ by more than {a.max_diff:.0%}: {x:.2f} vs {y:.2f}")
    return why


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4, help="optimiser steps per run; the first is a warm-up")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each loop, alternating")
    ap.add_argument("--tool-rounds", type=int, default=2, help="simulator calls allowed (turns: one more)")
    ap.add_argument("--max-new-tokens", type=int, default=96, help="per assistant turn, in both loops")
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy, the same tokens in both loops")
    ap.add_argument("--simulator", default="oracle")
    ap.add_argument("--min-calls", type=float, default=1.0, help="fewest tool calls per row for a ratio")
    ap.add_argument("--max-diff", type=float, default=0.1, help="largest relative difference in calls, turns, tokens")
    a = ap.parse_args(argv)
    import torch
    from astra_wb.synthqa import generate_bench
    from astra_wb.hf import retain_freed_memory
    torch.manual_seed(0)
    torch.set_num_threads(1)
    retain_freed_memory()   # what our trainer sets on CPU, set for both loops from the start (one process)
    samples = generate_bench(4, seed=0)
    base, processor = fitted_caller(caller_cache())
    state = copy.deepcopy(base.state_dict())
    names = ("astra-wb agent loop", "TRL built-in tool loop")
    wall, cpu, rows = ({k: [] for k in names} for _ in range(3))
    prompts = {}
    for r in range(a.rounds):
        for name, fn in zip(names, (ours, trl_builtin)):
            model = copy.deepcopy(base)
            model.load_state_dict(state)
            timer, logs, first = fn(model, processor, samples, tempfile.mkdtemp(), a)
            wall[name] += timer.times[1:]
            cpu[name] += timer.cpu[1:]
            rows[name] += logs[1:]
            prompts.setdefault(name, {}).update(first)
            print(f"round {r}: {name}: step seconds {[round(t, 2) for t in timer.times]} (CPU "
                  f"{[round(t, 2) for t in timer.cpu]}), calls/row {[round(x['calls'], 2) for x in logs]}, "
                  f"turns/row {[round(x['turns'], 2) for x in logs]}, "
                  f"model tokens/row {[round(x['model_tokens'], 1) for x in logs]}", flush=True)
    print(f"\n{len(samples)} prompts x 4 generations, {a.tool_rounds} tool rounds, {a.tool_rounds + 1} turns, "
          f"{a.max_new_tokens} tokens per turn, temperature {a.temperature}, simulator {a.simulator}; "
          f"{a.steps - 1} counted steps per run x {a.rounds} runs; torch threads {torch.get_num_threads()}")
    print("\n| loop | median s/step | median CPU s/step | tool calls per row | turns per row | model tokens per row |"
          "\n|---|---|---|---|---|---|")
    for k in names:
        m = {f: statistics.mean(x[f] for x in rows[k]) for f in ("calls", "turns", "model_tokens")}
        print(f"| {k} | {statistics.median(wall[k]):.2f} | {statistics.median(cpu[k]):.2f} | {m['calls']:.2f} | "
              f"{m['turns']:.2f} | {m['model_tokens']:.1f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    why = equal_work(rows, prompts, a)
    if why:
        print("NOT EQUAL WORK, no ratio: " + "; ".join(why), file=sys.stderr)
        return 1
    ratio = statistics.median(wall[names[0]]) / statistics.median(wall[names[1]])
    cpu_ratio = statistics.median(cpu[names[0]]) / statistics.median(cpu[names[1]])
    print(f"ratio astra-wb / TRL built-in: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU (goal <= 1.1x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
