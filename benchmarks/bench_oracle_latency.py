"""Latency of the oracle world simulator as the app and the agent loop see it: one `imagine` call
(motion -> PIL image) on a synthetic sample at 512x512, including scene parsing, rendering and
image conversion. Prints p50 / p95 / max; the app needs p95 < 100 ms. Also times `reproject` and
`cached(oracle)` hits for reference.

Usage: python benchmarks/bench_oracle_latency.py [--calls 200] [--size 512]
"""
from __future__ import annotations
import argparse, time
import numpy as np


def latencies(sim, sample, motions):
    out = []
    for m in motions:
        t0 = time.perf_counter()
        sim.imagine(sample, [], 1, m)
        out.append((time.perf_counter() - t0) * 1e3)
    return np.array(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200); p.add_argument("--size", type=int, default=512)
    a = p.parse_args(argv)
    from astra_wb.motion import Motion
    from astra_wb.scene import make_scene
    from astra_wb.simulators import get_simulator, scene_sample
    rng = np.random.default_rng(0)
    kinds = [("yaw", 180), ("pitch", 60), ("forward", 3), ("lateral", 3), ("vertical", 1)]
    motions = []
    for _ in range(a.calls):
        k, hi = kinds[rng.integers(len(kinds))]
        motions.append(Motion(k, float(np.round(rng.uniform(0.1, 1) * hi * rng.choice([-1, 1]), 2))))
    sample = scene_sample(make_scene(7), width=a.size, height=a.size, n_views=2)
    def report(label, ms, note=""):
        print(f"{label:22s} {a.size}x{a.size}: p50 {np.percentile(ms, 50):6.2f} ms  p95 {np.percentile(ms, 95):6.2f} ms  "
              f"max {ms.max():6.2f} ms  over {len(ms)} calls{note}")
    for spec in ("oracle", "reproject", f"cached(oracle,maxsize={2 * a.calls})"):
        sim = get_simulator(spec)
        latencies(get_simulator(spec), sample, motions[:3])           # warm up (numba cache, first render)
        report(spec + (" misses" if spec.startswith("cached") else ""), latencies(sim, sample, motions),
               "  (goal p95 < 100 ms)" if spec == "oracle" else "")
        if spec.startswith("cached"): report(spec + " hits", latencies(sim, sample, motions))


if __name__ == "__main__":
    main()
