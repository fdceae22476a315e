"""Imagining one 256x192 view with the learned simulator (warp + small U-Net on CPU) against `reproject`
(the warp alone), on the same calls in the same run.

The learned model is built from its config with random weights unless --model names a trained checkpoint:
inference time does not depend on the weights' values.

Usage: python benchmarks/bench_learned_sim.py [--calls 40] [--model RUN/tuned] [--threads N]
"""
from __future__ import annotations
import argparse, statistics, tempfile, time


def timed(sim, cases) -> tuple[list[float], float]:
    "Wall milliseconds per call, and the process CPU milliseconds per call (all threads) over the calls."
    out, c0 = [], time.process_time()
    for sample, ref, motion in cases:
        t0 = time.perf_counter()
        sim.imagine(sample, [], ref, motion)
        out.append(1000 * (time.perf_counter() - t0))
    return out, 1000 * (time.process_time() - c0) / max(len(cases), 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=40); p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--width", type=int, default=256); p.add_argument("--height", type=int, default=192)
    a = p.parse_args(argv)
    import os, torch
    from astra_wb.learned_sim import LearnedSim
    from astra_wb.motion import Motion
    from astra_wb.scene import make_scene
    from astra_wb.simulators import get_simulator, scene_sample
    if a.threads: torch.set_num_threads(a.threads)
    model = a.model
    if model is None:
        model = tempfile.mkdtemp() + "/untrained"
        torch.manual_seed(0); LearnedSim().save_pretrained(model)
    learned, reproject = get_simulator(f"learned:{model}"), get_simulator("reproject")
    motions = [Motion("yaw", 30), Motion("forward", 0.8), Motion("lateral", -0.5), Motion("pitch", -15), Motion("vertical", 0.3)]
    cases = [(scene_sample(make_scene(i % 8), width=a.width, height=a.height, n_views=2, seed=i), 1 + i % 2, motions[i % 5])
             for i in range(a.calls)]
    timed(learned, cases[:3]); timed(reproject, cases[:3])          # numba cache and torch warm-up
    load0 = os.getloadavg()[0]
    (r, rc), (l, lc) = timed(reproject, cases), timed(learned, cases)
    med = lambda xs: statistics.median(xs)
    print(f"{a.calls} calls at {a.width}x{a.height}, torch threads {torch.get_num_threads()}, "
          f"load average {load0:.1f} before / {os.getloadavg()[0]:.1f} after (the machine is shared)")
    print(f"reproject (reference): median {med(r):6.1f} ms   p90 {sorted(r)[int(0.9 * len(r))]:6.1f} ms   cpu {rc:6.1f} ms/call")
    print(f"learned              : median {med(l):6.1f} ms   p90 {sorted(l)[int(0.9 * len(l))]:6.1f} ms   cpu {lc:6.1f} ms/call   "
          f"({med(l) / med(r):.1f}x reproject; target < 50 ms)")


if __name__ == "__main__":
    main()
