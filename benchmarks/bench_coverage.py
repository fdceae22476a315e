"""Coverage of a 512x512 target against 3 context views (paper App. A.1, eq. 2).

Compares, in the same run and on the same frames:
  numba bitmap   -- `wm_data.coverage`: dense voxel bitmap over the target's box, one numba pass per camera
  numpy bitmap   -- the same bitmap idea in plain NumPy (back-project, floor, index a dense array)
  numpy unique   -- `wm_data.coverage_reference`: np.unique of target voxel keys + np.isin against the context keys (baseline)
Run: python benchmarks/bench_coverage.py [--size 512] [--repeats 20]
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # the (N,3)@(3,3) products gain nothing from BLAS threads, which only contend
import argparse, statistics, time
import numpy as np
from astra_wb.geometry import intrinsics
from astra_wb.scene import make_scene, render, sample_cameras
from astra_wb.wm_data import GRID_OFFSET, WMDataConfig, coverage, coverage_reference, frame_points, synthetic_sets


def numpy_bitmap(target, contexts, voxel):
    t = np.floor(frame_points(target) / voxel - GRID_OFFSET).astype(np.int64)
    lo, dims = t.min(0), t.max(0) - t.min(0) + 1
    grid = np.zeros(int(np.prod(dims)), np.uint8)
    flat = lambda ijk: (ijk[:, 0] * dims[1] + ijk[:, 1]) * dims[2] + ijk[:, 2]
    grid[flat(t - lo)] = 1
    for c in contexts:
        ijk = np.floor(frame_points(c) / voxel - GRID_OFFSET).astype(np.int64) - lo
        ijk = ijk[np.all((ijk >= 0) & (ijk < dims), 1)]
        grid[flat(ijk)] |= 2
    return float((grid == 3).sum() / (grid & 1).sum())


def timed(fn, repeats):
    "(median wall seconds, median CPU seconds, value); CPU time is the figure to trust on a busy machine."
    fn()                                   # warm-up (numba compile / cache load)
    ts, cs = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time(); v = fn()
        ts.append(time.perf_counter() - t0); cs.append(time.process_time() - c0)
    return statistics.median(ts), statistics.median(cs), v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512); ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--voxel", type=float, default=0.05); ap.add_argument("--sets", type=int, default=5)
    a = ap.parse_args()
    sets = []
    for seed in range(20):
        sets += synthetic_sets(make_scene(seed), 1, WMDataConfig(image_size=a.size, n_context=(3, 3)), np.random.default_rng(seed))
        if len(sets) == a.sets: break
    print(f"coverage of a {a.size}x{a.size} target vs 3 context views, voxel {a.voxel} m, median of {a.repeats} runs, {len(sets)} camera sets")
    rows = {"numba bitmap": [], "numpy bitmap": [], "numpy unique+isin (baseline)": []}
    for s in sets:
        for name, fn in (("numba bitmap", lambda: coverage(s.target, s.contexts, a.voxel)),
                         ("numpy bitmap", lambda: numpy_bitmap(s.target, s.contexts, a.voxel)),
                         ("numpy unique+isin (baseline)", lambda: coverage_reference(s.target, s.contexts, a.voxel))):
            rows[name].append(timed(fn, a.repeats))
    base = [statistics.median(x[i] for x in rows["numpy unique+isin (baseline)"]) for i in (0, 1)]
    for name, r in rows.items():
        t, c = (statistics.median(x[i] for x in r) for i in (0, 1))
        print(f"  {name:30s} wall {1000 * t:8.2f} ms ({base[0] / t:5.1f}x)   cpu {1000 * c:8.2f} ms ({base[1] / c:5.1f}x vs baseline)"
              f"   coverage {[round(x[2], 4) for x in r]}")
    diff = max(abs(x[2] - y[2]) for x, y in zip(rows["numba bitmap"], rows["numpy unique+isin (baseline)"]))
    print(f"  max |numba - baseline| coverage difference: {diff:.2e}")


if __name__ == "__main__":
    main()
