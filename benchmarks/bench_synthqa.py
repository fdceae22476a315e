"""Synthetic-bench generation speed, and the expert's cost per turn.

Generates `--n` questions and reports CPU seconds, ms per question and renders per question. As
the reference measured in the same run it times the renderer alone on the same number of frames
(the generator's irreducible work: every candidate view is a render), so the ratio shows the
generator's own overhead. Then times the expert policy per turn (Direct and Agentic with the
oracle) against the oracle's own time per imagined view.

    python benchmarks/bench_synthqa.py [--n 200] [--seed 0]
"""
import argparse
import time

import numpy as np

import astra_wb.synthqa as sq
from astra_wb.agent import AgentConfig, rollout
from astra_wb.expert import ExpertPolicy
from astra_wb.scene import make_scene, render
from astra_wb.simulators import get_simulator


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    sq.generate_bench(4, seed=a.seed + 1)                      # compile / warm numba kernels

    renders = [0]
    view = sq.World.view
    def counting(self, pose):
        key = np.round(pose, 6).tobytes()
        renders[0] += key not in self._cache
        return view(self, pose)
    sq.World.view = counting
    t = time.process_time(); bench = sq.generate_bench(a.n, seed=a.seed); gen = time.process_time() - t
    sq.World.view = view
    k = sum(s.meta["needs_imagination"] for s in bench)
    print(f"generate_bench({a.n}): {gen:.2f} s CPU, {1000 * gen / a.n:.1f} ms/question, "
          f"{renders[0] / a.n:.1f} renders/question, {k} need imagination")

    w = sq.World(make_scene(a.seed))
    poses = w.cameras(8, np.random.default_rng(0))
    t = time.process_time()
    for i in range(renders[0]): f = render(w.scene, poses[i % len(poses)], w.K, w.W, w.H); sq.view_stats(f.ids, len(w.scene.objects))
    ref = time.process_time() - t
    print(f"reference: render + view_stats alone for the same {renders[0]} frames: {ref:.2f} s CPU "
          f"-> generator total / renders = {gen / ref:.2f}x")

    oracle = get_simulator("oracle")
    for mode in ("direct", "agentic"):
        trajs = rollout(bench, ExpertPolicy(), oracle, AgentConfig(mode=mode))
        turns = sum(len(t.turns) for t in trajs)
        pol = sum(t.timings["policy"] for t in trajs); sim = sum(t.timings["simulator"] for t in trajs)
        calls = sum(t.n_tool_calls for t in trajs)
        print(f"expert {mode:8s}: {1000 * pol / turns:.2f} ms/turn policy over {turns} turns"
              + (f"; oracle {1000 * sim / max(calls, 1):.2f} ms/imagined view ({calls} calls)" if calls else ""))


if __name__ == "__main__":
    main()
