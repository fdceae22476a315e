"""Imagining one 256x192 view with the learned simulator (warp + small U-Net on CPU) against `reproject`
(the warp alone), on the same calls in the same run; and the learned simulator's straightforward path
(`render_reference`, the training path's functions) beside its inference path (`render_fast`).

The three are timed call by call in turn (reproject, learned, learned straightforward, then the next view),
so a change in the shared machine's load falls on all three alike. Wall time is what a caller waits;
CPU time (this process, all threads) is the work, less sensitive to other processes on the machine.

The learned model is built from its config with random weights unless --model names a trained checkpoint:
inference time does not depend on the weights' values.

With --shapes it times instead what smaller model shapes would cost (random weights; retraining would be
needed to use one): the U-Net alone and `render_fast` whole, in CPU ms, against the default shape in the
same run.

Usage: python benchmarks/bench_learned_sim.py [--calls 40] [--model RUN/tuned] [--threads N] [--shapes]
"""
from __future__ import annotations
import argparse, os, statistics, tempfile, time


def timed_call(sim, case) -> tuple[float, float]:
    "(wall ms, process CPU ms) of one `imagine` call."
    sample, ref, motion = case
    c0, t0 = time.process_time(), time.perf_counter()
    sim.imagine(sample, [], ref, motion)
    return 1000 * (time.perf_counter() - t0), 1000 * (time.process_time() - c0)


def summary(name: str, wall: list[float], cpu: list[float], ref: tuple[float, float] | None = None) -> str:
    "One line: median and p90 wall ms, median CPU ms, and the ratios of the medians to `ref` (wall, CPU)."
    p90 = sorted(wall)[int(0.9 * len(wall))]
    line = (f"{name:29s}: median {statistics.median(wall):6.1f} ms   p90 {p90:6.1f} ms   "
            f"cpu median {statistics.median(cpu):6.1f} ms")
    if ref: line += f"   ({statistics.median(wall) / ref[0]:.1f}x wall, {statistics.median(cpu) / ref[1]:.1f}x cpu)"
    return line


SHAPES = {"default": {}, "base 8": dict(base=8), "levels 2": dict(levels=2), "base 8, levels 2": dict(base=8, levels=2),
          "net_width 32": dict(net_width=32), "refine 0": dict(refine=0)}


def cpu_once(f) -> float:
    "Process CPU ms of one call of `f`, after a warm-up call."
    f()
    c0 = time.process_time()
    f()
    return 1000 * (time.process_time() - c0)


def shapes(cases: list) -> None:
    "CPU ms of the U-Net and of `render_fast` for each of SHAPES, on the views of `cases`, a 30 degree turn each."
    import torch
    from astra_wb.learned_sim import (LearnedSim, LearnedSimConfig, motion_vector, render_fast, thumb_input,
                                      thumb_sources, thumbnail)
    from astra_wb.simulators import View
    base = None
    for name, kw in SHAPES.items():
        torch.manual_seed(0)
        m = LearnedSim(LearnedSimConfig(**kw)).eval()
        m.net.to(memory_format=torch.channels_last)                  # as LearnedSimulator holds it
        turn = torch.from_numpy(motion_vector([0, 0, 0, 30, 0], m.cfg))[None]
        net, whole = [], []
        with torch.inference_mode():
            for sample, _, _ in cases:
                views = [View(i + 1, *f) for i, f in enumerate(zip(sample.images, sample.poses, sample.intrinsics,
                                                                   sample.depths))]
                (W, H), K = views[0].image.size, views[0].K
                T = m.pose(torch.tensor(views[0].pose[None], dtype=torch.float32), turn)
                Kt, size = thumbnail(torch.tensor(K[None]), W, H, m.cfg)
                x = thumb_input(thumb_sources(views, 2 * size[0], 2 * size[1]), T, Kt, size, m.cfg)
                net.append(cpu_once(lambda: m.net(x.contiguous(memory_format=torch.channels_last))))
                whole.append(cpu_once(lambda: render_fast(m, views, T, K, W, H)))
        med = (statistics.median(net), statistics.median(whole))
        base = base or med
        print(f"{name:17s}: U-Net {med[0]:5.2f} ms cpu ({med[0] / base[0]:.2f}x)   render_fast {med[1]:5.2f} ms cpu "
              f"({med[1] / base[1]:.2f}x)   {sum(p.numel() for p in m.net.parameters())} U-Net parameters")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=40); p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--width", type=int, default=256); p.add_argument("--height", type=int, default=192)
    p.add_argument("--shapes", action="store_true", help="time smaller model shapes instead (random weights)")
    a = p.parse_args(argv)
    import torch
    from astra_wb.learned_sim import LearnedSim
    from astra_wb.motion import Motion
    from astra_wb.scene import make_scene
    from astra_wb.simulators import get_simulator, scene_sample
    if a.threads: torch.set_num_threads(a.threads)
    model = a.model
    if model is None:
        model = tempfile.mkdtemp() + "/untrained"
        torch.manual_seed(0); LearnedSim().save_pretrained(model)
    motions = [Motion("yaw", 30), Motion("forward", 0.8), Motion("lateral", -0.5), Motion("pitch", -15), Motion("vertical", 0.3)]
    cases = [(scene_sample(make_scene(i % 8), width=a.width, height=a.height, n_views=2, seed=i), 1 + i % 2, motions[i % 5])
             for i in range(a.calls)]
    if a.shapes:
        print(f"{a.calls} views at {a.width}x{a.height}, torch threads {torch.get_num_threads()}, "
              f"load average {os.getloadavg()[0]:.1f} (the machine is shared)")
        return shapes(cases)
    sims = {"reproject (reference)": get_simulator("reproject"), "learned": get_simulator(f"learned:{model}"),
            "learned, straightforward path": get_simulator(f"learned:{model}")}
    sims["learned, straightforward path"].fast = False
    for sim in sims.values():                                       # numba cache and torch warm-up
        for case in cases[:3]: timed_call(sim, case)
    load0 = os.getloadavg()[0]
    times = {name: ([], []) for name in sims}
    for case in cases:
        for name, sim in sims.items():
            wall, cpu = timed_call(sim, case)
            times[name][0].append(wall); times[name][1].append(cpu)
    print(f"{a.calls} calls at {a.width}x{a.height}, torch threads {torch.get_num_threads()}, "
          f"load average {load0:.1f} before / {os.getloadavg()[0]:.1f} after (the machine is shared)")
    ref = tuple(statistics.median(x) for x in times["reproject (reference)"])
    for name, (wall, cpu) in times.items():
        print(summary(name, wall, cpu, None if name.startswith("reproject") else ref))
    fast, slow = (statistics.median(times[n][0]) for n in ("learned", "learned, straightforward path"))
    print(f"learned: {slow / fast:.1f}x faster than its straightforward path; target: median and p90 under 50 ms")


if __name__ == "__main__":
    main()
