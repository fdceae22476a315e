"""Rollout generation on the `small` preset: seconds per GRPO rollout (4 prompts x 4 generations, 2 tool rounds, 3
turns, 96 tokens per turn, greedy) for variants of the generation path, on equal work.

The model is `bench_grpo.fitted_caller` (the small preset cold-started to call the simulator twice), so every
rollout makes real simulator calls. Each variant runs in its own process (a process-wide allocator setting cannot
be undone in place), variants alternate (A B A B ...) so machine load affects all, each process rolls out once to
warm up and then --reps times. Every variant must decode the same tokens as the first (greedy): the benchmark
refuses to print ratios otherwise. Printed per variant: median wall and CPU seconds per rollout, generated tokens,
generate calls, peak memory (max RSS), and the ratio to the reference variant `batched`.

Variants:
- `batched`: the library's path: one left-padded `generate` per turn for every live conversation, KV cache on,
  freed memory kept for reuse (`hf.retain_freed_memory`, which the policy calls on CPU);
- `one-by-one`: one conversation per `generate` (`AgentConfig.max_batch=1`), what batching saves;
- `batched+glibc-default`: `batched` with glibc's allocator left as it is (freed big blocks unmapped);
- `batched+static-cache`: `batched` with transformers' static KV cache instead of the dynamic one.

python benchmarks/bench_generation.py [--rounds 3] [--reps 2] [--variants batched,batched+glibc-default]
"""
import argparse, json, os, resource, statistics, subprocess, sys, time
from pathlib import Path
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
VARIANTS = ("batched", "one-by-one", "batched+glibc-default", "batched+static-cache")


def child(variant: str, reps: int) -> dict:
    "Roll out `reps` times (after a warm-up) under `variant`; times, tokens and peak memory as a dict."
    import torch
    from bench_grpo import caller_cache, fitted_caller
    from astra_wb import hf
    from astra_wb.agent import AgentConfig, rollout
    from astra_wb.synthqa import generate_bench
    torch.set_num_threads(1)
    if variant == "batched+glibc-default":
        hf.retain_freed_memory = lambda *a, **kw: False
    if variant == "batched+static-cache":
        plain = hf.turn_generation_config

        def static(*a, **kw):
            gc = plain(*a, **kw)
            gc.cache_implementation = "static"
            return gc
        hf.turn_generation_config = static
    model, proc = fitted_caller(caller_cache())
    samples = generate_bench(4, seed=0)
    cfg = AgentConfig(max_tool_rounds=2, max_turns=3, max_new_tokens=96, temperature=0.0, group_size=4,
                      max_batch=1 if variant == "one-by-one" else 0)
    wall, cpu = [], []
    for r in range(reps + 1):
        pol = hf.TokenPolicy(model, proc)
        pol.reset(seed=0)
        t0, c0 = time.perf_counter(), time.process_time()
        trajs = rollout(samples, pol, "oracle", cfg)
        if r:   # the first rollout warms up
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    texts = [[t.text for t in tr.turns] for tr in trajs]
    return dict(wall=wall, cpu=cpu, tokens=pol.n_generated, generate_calls=pol.calls, texts=texts,
                calls_per_row=sum(tr.n_tool_calls for tr in trajs) / len(trajs),
                max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="processes per variant, alternating")
    ap.add_argument("--reps", type=int, default=2, help="timed rollouts per process")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print("RESULT " + json.dumps(child(a.child, a.reps)))
        return 0
    names = a.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    runs = {k: [] for k in names}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for r in range(a.rounds):
        for k in names:
            out = subprocess.run([sys.executable, __file__, "--child", k, "--reps", str(a.reps)], env=env,
                                 capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                print(out.stderr[-3000:], file=sys.stderr)
                return 2
            runs[k].append(json.loads(line[0][7:]))
            print(f"round {r} {k}: wall {[round(x, 2) for x in runs[k][-1]['wall']]} s", flush=True)
    ref = runs[names[0]][0]["texts"]
    same = {k: all(x["texts"] == ref for x in v) for k, v in runs.items()}
    med = {k: (statistics.median(w for x in v for w in x["wall"]), statistics.median(c for x in v for c in x["cpu"]))
           for k, v in runs.items()}
    print("\n| variant | median s/rollout | median CPU s | generated tokens | generate calls | calls per row | "
          "max RSS MB | same tokens | ratio to batched (wall / CPU) |\n|---|---|---|---|---|---|---|---|---|")
    base = med.get("batched", med[names[0]])
    for k, v in runs.items():
        ratio = f"{med[k][0] / base[0]:.2f}x / {med[k][1] / base[1]:.2f}x" if same[k] else "refused"
        print(f"| {k} | {med[k][0]:.2f} | {med[k][1]:.2f} | {v[0]['tokens']} | {v[0]['generate_calls']} | "
              f"{v[0]['calls_per_row']:.2f} | {max(x['max_rss_mb'] for x in v):.0f} | {same[k]} | {ratio} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not all(same.values()):
        bad = ", ".join(k for k, s in same.items() if not s)
        print(f"NOT EQUAL WORK: {bad} decoded other tokens", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
