"""Pose recovery of oracle views (exact renders): ORB (the reference) against SIFT (the default), same run, same pairs.

Two measurements:
  pairs (default): 8 sources x 9 motions at 512x512, the source view alone, source features cached;
      prints median ms per pair, median / 90th-percentile rotation error and the pose-consistency pass rate.
  --test-sets SEEDS: the sim-quality test sets (`build_test_set`, 200 samples per seed at 384x384, every context
      view used) for each seed; prints the pose consistency over ALL samples (unrecoverable = fail) per seed and
      matcher, and the failure reasons. This is the number `astra-wb sim-quality --protocol pnp` reports for the oracle,
      whose image is the true target.
OpenCV is limited to 2 threads. Run: python benchmarks/bench_pose.py [--size 512] [--scenes 8]
                                     python benchmarks/bench_pose.py --test-sets 1000000,1,2 [--per-source 200]
"""
import argparse, statistics, tempfile, time
from pathlib import Path
import cv2
import numpy as np
from astra_wb.geometry import DOF_KINDS, decompose, intrinsics
from astra_wb.motion import Motion
from astra_wb.scene import make_scene, render, sample_cameras
from astra_wb.sim_quality import FeaturePnP, pose_consistent, build_test_set
from astra_wb.wm_data import WMDataConfig

MOTIONS = [Motion("yaw", 25), Motion("yaw", -40), Motion("pitch", 15), Motion("pitch", -20), Motion("lateral", 0.6),
           Motion("lateral", -1.0), Motion("vertical", 0.4), Motion("forward", 0.8), Motion("forward", -1.0)]
MATCHERS = (("ORB + AP3P PnP + dense (reference)", dict(features="orb")), ("SIFT + AP3P PnP + dense (default)", {}))


def rot_err(Ta, Tb) -> float:
    R = Ta[:3, :3].T @ Tb[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def pairs_bench(size: int, scenes: int):
    K = intrinsics(size, size, 60)
    pairs = []
    for seed in range(scenes):
        scene = make_scene(100 + seed)
        src = render(scene, sample_cameras(scene, 1, seed)[0], K, size, size)
        pairs += [(f"s{seed}", src, m, render(scene, m.apply(src.pose), K, size, size)) for m in MOTIONS]
    print(f"pose recovery at {size}x{size}: {len(pairs)} oracle pairs ({scenes} sources x {len(MOTIONS)} motions), cached source features, 2 OpenCV threads")
    for name, kw in MATCHERS:
        est = FeaturePnP(**kw)
        for key, src, _, _ in pairs: est.source_features(src, key)           # fill the cache (not timed)
        times, cpu, errs, passed, failed = [], [], [], 0, 0
        for key, src, m, tgt in pairs:
            t0, c0 = time.perf_counter(), time.process_time(); r = est.estimate(src, tgt.rgb, key=key)
            times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
            if r.pose is None: failed += 1; continue
            errs.append(rot_err(r.pose, tgt.pose))
            passed += pose_consistent(decompose(src.pose, r.pose), decompose(src.pose, tgt.pose), DOF_KINDS.index(m.kind))[0]
        print(f"  {name:36s} wall {1000 * statistics.median(times):6.2f} ms/pair, cpu {1000 * statistics.median(cpu):6.2f} ms   rot err median {np.median(errs):.3f} deg,"
              f" p90 {np.percentile(errs, 90):.2f} deg   pose-consistent {passed}/{len(pairs)}   unrecovered {failed}")


def test_set_bench(seeds, per_source: int, size: int):
    print(f"pose consistency of the oracle over ALL samples of sim-quality test sets ({per_source} per seed, {size}x{size}, every context view)")
    totals = {name: [0, 0, 0.0] for name, _ in MATCHERS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            samples = build_test_set(Path(tmp) / str(seed), per_source=per_source, cfg=WMDataConfig(image_size=size, seed=seed))
            for name, kw in MATCHERS:
                est, ok, fails, c0 = FeaturePnP(**kw), 0, {}, time.process_time()
                for s in samples:
                    src = s.contexts[s.source_index]
                    r = est.estimate(src, s.target.rgb, contexts=s.contexts)
                    good, why = (False, r.reason) if r.pose is None else pose_consistent(
                        decompose(src.pose, r.pose), s.decomposition, DOF_KINDS.index(s.motion.kind))
                    ok += good
                    if not good: fails[why] = fails.get(why, 0) + 1
                cpu = time.process_time() - c0
                t = totals[name]; t[0] += ok; t[1] += len(samples); t[2] += cpu
                print(f"  seed {seed:>8}  {name:36s} {100 * ok / len(samples):5.1f} % of {len(samples)}  ({1000 * cpu / len(samples):.0f} ms cpu/sample)  failures {fails}")
    for name, (ok, n, cpu) in totals.items():
        print(f"  all seeds   {name:36s} {100 * ok / n:5.1f} % of {n}  ({1000 * cpu / n:.0f} ms cpu/sample)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=None); ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--test-sets", default=None, help="comma-separated test-set seeds (e.g. 1000000,1,2)")
    ap.add_argument("--per-source", type=int, default=200)
    a = ap.parse_args()
    cv2.setNumThreads(2)
    if a.test_sets: test_set_bench([int(s) for s in a.test_sets.split(",")], a.per_source, a.size or 384)
    else: pairs_bench(a.size or 512, a.scenes)


if __name__ == "__main__":
    main()
