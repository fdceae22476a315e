"""Where one GRPO step of astra-wb's loop spends its time, on the `small` preset (CPU, one torch thread).

The model is the small preset cold-started to call the simulator (`bench_grpo.fitted_caller`, cached), so the
rollouts make real simulator calls. Each phase is timed by wrapping the function that does it (wall and process
CPU seconds, outermost call only):

- rollout: our agent loop inside `GRPOTrainer._generate`, split into
  - generation: `TokenPolicy.sample` (transformers `generate` on the live conversations of a turn),
  - prompt encoding: `TokenPolicy.encode` (chat template, tokenisation, cached pieces),
  - image processing: `TokenPolicy.pixels`,
  - simulator: the loop's `_imagine_all` (the world simulator's calls of a turn),
  - the rest of the rollout (turn parsing, bookkeeping, trajectory tokens, logging);
- scoring: `_generate_and_score_completions` minus the rollout (rewards, padding, TRL's tensors);
- loss forward: `compute_loss`; backward: `accelerator.backward`; optimiser: `optimizer.step`;
- TRL / Trainer overhead: the step's wall time minus all of the above.

The first step is a warm-up and is not counted. `--cprofile N` also prints the N functions with the most cumulative
time over the counted steps.

python benchmarks/profile_grpo.py [--steps 4] [--max-new-tokens 96] [--temperature 0] [--phase 1] [--cprofile 25]
                                  [--no-retain]
"""
import argparse, cProfile, functools, io, os, pstats, sys, tempfile, time
from pathlib import Path
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))


class Phases:
    "Exclusive wall and CPU seconds per phase, from wrapped functions (a phase's time excludes the phases it calls)."
    def __init__(self):
        self.wall, self.cpu, self.stack, self.on = {}, {}, [], False

    def wrap(self, owner, attr: str, label: str):
        fn = getattr(owner, attr)
        phases = self

        @functools.wraps(fn)
        def timed(*a, **kw):
            if not phases.on or any(f[0] == label for f in phases.stack):
                return fn(*a, **kw)
            phases.stack.append([label, 0.0, 0.0])   # the time of the phases called inside this one
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                dw, dc = time.perf_counter() - t0, time.process_time() - c0
                _, inner_w, inner_c = phases.stack.pop()
                phases.wall[label] = phases.wall.get(label, 0.0) + dw - inner_w
                phases.cpu[label] = phases.cpu.get(label, 0.0) + dc - inner_c
                if phases.stack:
                    phases.stack[-1][1] += dw
                    phases.stack[-1][2] += dc
        setattr(owner, attr, timed)


def instrument(tr, phases: Phases):
    "Wrap the trainer's, the policy's and the loop's phase functions."
    from astra_wb import agent, hf
    phases.wrap(hf.TokenPolicy, "sample", "generation")
    phases.wrap(hf.TokenPolicy, "encode", "prompt encoding")
    phases.wrap(hf.TokenPolicy, "pixels", "image processing")
    phases.wrap(agent._Rollout, "_imagine_all", "simulator")
    phases.wrap(tr, "_generate", "rollout")
    phases.wrap(tr, "_generate_and_score_completions", "generate and score")
    phases.wrap(tr, "compute_loss", "loss forward")
    phases.wrap(tr.accelerator, "backward", "backward")


def step_callback(phases: Phases, steps: list, profiler, optimizer_times: list):
    from transformers import TrainerCallback

    class CB(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            phases.on = state.global_step >= 1   # step 0 warms up
            if phases.on and profiler is not None:
                profiler.enable()
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_pre_optimizer_step(self, args, state, control, **kw):
            self.o0, self.oc0 = time.perf_counter(), time.process_time()

        def on_optimizer_step(self, args, state, control, **kw):
            optimizer_times.append((time.perf_counter() - self.o0, time.process_time() - self.oc0, phases.on))

        def on_step_end(self, args, state, control, **kw):
            if profiler is not None and phases.on:
                profiler.disable()
            steps.append((time.perf_counter() - self.t0, time.process_time() - self.c0, phases.on))
    return CB()


def table(phases: Phases, steps, optimizer_times) -> str:
    "The per-step breakdown as a markdown table (seconds per counted step)."
    n = sum(on for *_, on in steps)
    wall, cpu = sum(w for w, _, on in steps if on) / n, sum(c for _, c, on in steps if on) / n
    w, c = {k: v / n for k, v in phases.wall.items()}, {k: v / n for k, v in phases.cpu.items()}
    w["optimiser step"] = sum(x for x, _, on in optimizer_times if on) / n
    c["optimiser step"] = sum(x for _, x, on in optimizer_times if on) / n
    names = {"generation": "policy generation (`generate`)",
             "prompt encoding": "prompt encoding (chat template, tokens)",
             "image processing": "image processing", "simulator": "simulator",
             "rollout": "rest of the rollout (turn parsing, trajectory tokens, logging)",
             "generate and score": "scoring (rewards, TRL's padding and tensors)", "loss forward": "loss forward",
             "backward": "backward", "optimiser step": "optimiser step"}
    rows = [(label, w.get(k, 0.0), c.get(k, 0.0)) for k, label in names.items()]
    rows.append(("TRL / Trainer overhead (the rest of the step)", wall - sum(r[1] for r in rows),
                 cpu - sum(r[2] for r in rows)))
    out = ["| phase | wall s/step | CPU s/step | share of wall |", "|---|---|---|---|"]
    out += [f"| {k} | {a:.2f} | {b:.2f} | {a / wall:.0%} |" for k, a, b in rows]
    out.append(f"| **step** | **{wall:.2f}** | **{cpu:.2f}** | 100% |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4, help="steps in all; the first is a warm-up")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy (as bench_grpo)")
    ap.add_argument("--simulator", default="oracle")
    ap.add_argument("--phase", type=int, default=1, choices=(1, 2), help="2: every step adds the direct baselines")
    ap.add_argument("--cprofile", type=int, default=0, help="print the N functions with most cumulative time")
    ap.add_argument("--no-retain", action="store_true", help="leave glibc's allocator as it is (the policy's "
                    "`hf.retain_freed_memory` skipped): the before of that change")
    a = ap.parse_args(argv)
    import torch
    from bench_grpo import caller_cache, fitted_caller
    from astra_wb.agent import AgentConfig
    from astra_wb.rl import TrainConfig, make_trainer
    from astra_wb.simulators import get_simulator
    from astra_wb.synthqa import generate_bench
    torch.manual_seed(0)
    torch.set_num_threads(1)
    if a.no_retain:
        import astra_wb.hf
        astra_wb.hf.retain_freed_memory = lambda *a, **kw: False
    model, processor = fitted_caller(caller_cache())
    agent = AgentConfig(max_tool_rounds=2, max_turns=3, max_new_tokens=a.max_new_tokens, temperature=a.temperature)
    cfg = TrainConfig(output_dir=tempfile.mkdtemp(), max_steps=a.steps, phase1_steps=a.steps if a.phase == 1 else 0,
                      prompts_per_step=4,
                      num_generations=4, agent=agent, learning_rate=1e-6, save_steps=10_000,
                      gradient_checkpointing=False, simulator=a.simulator)
    phases, steps, opt = Phases(), [], []
    profiler = cProfile.Profile() if a.cprofile else None
    cb = step_callback(phases, steps, profiler, opt)
    tr = make_trainer(cfg, samples=generate_bench(4, seed=0), model=model, processor=processor,
                      simulator=get_simulator(a.simulator), callbacks=[cb])
    instrument(tr, phases)
    tr.train()
    logs = [r for r in tr.state.log_history if "loss" in r][1:]
    calls = sum(r["astra/calls_per_row"] for r in logs) / len(logs)
    turns = sum(r["astra/turns_per_row"] for r in logs) / len(logs)
    print(f"\nsmall preset, Phase {a.phase}, 4 prompts x 4 generations, 2 tool rounds, 3 turns, "
          f"{a.max_new_tokens} tokens per turn, "
          f"temperature {a.temperature}, simulator {a.simulator}, freed memory "
          f"{'returned to the OS (glibc default)' if a.no_retain else 'retained'}; "
          f"{len(logs)} counted steps after a warm-up; "
          f"calls per row {calls:.2f}, turns per row {turns:.2f}; torch threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print(table(phases, steps, opt))
    if profiler is not None:
        s = io.StringIO()
        pstats.Stats(profiler, stream=s).sort_stats("cumulative").print_stats(a.cprofile)
        print(s.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
