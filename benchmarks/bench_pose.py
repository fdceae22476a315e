"""Pose recovery per (source RGB-D, generated image) pair at 512x512, on oracle views (exact renders).

Same run, same pairs, source features cached (as when one source is scored against many simulators):
  ORB + ratio test + AP3P RANSAC + LM                -- `FeaturePnP(dense=False)` (reference)
  ... + dense photometric refinement (the default)   -- `FeaturePnP()`
Prints median ms per pair, median / 90th-percentile rotation error, and the pose-consistency pass rate.
OpenCV is limited to 2 threads. Run: python benchmarks/bench_pose.py [--size 512] [--scenes 8]
"""
import argparse, statistics, time
import cv2
import numpy as np
from astra_wb.geometry import DOF_KINDS, decompose, intrinsics
from astra_wb.motion import Motion
from astra_wb.scene import make_scene, render, sample_cameras
from astra_wb.sim_quality import FeaturePnP, pose_consistent

MOTIONS = [Motion("yaw", 25), Motion("yaw", -40), Motion("pitch", 15), Motion("pitch", -20), Motion("lateral", 0.6),
           Motion("lateral", -1.0), Motion("vertical", 0.4), Motion("forward", 0.8), Motion("forward", -1.0)]


def rot_err(Ta, Tb) -> float:
    R = Ta[:3, :3].T @ Tb[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512); ap.add_argument("--scenes", type=int, default=8)
    a = ap.parse_args()
    cv2.setNumThreads(2)
    K = intrinsics(a.size, a.size, 60)
    pairs = []
    for seed in range(a.scenes):
        scene = make_scene(100 + seed)
        src = render(scene, sample_cameras(scene, 1, seed)[0], K, a.size, a.size)
        pairs += [(f"s{seed}", src, m, render(scene, m.apply(src.pose), K, a.size, a.size)) for m in MOTIONS]
    print(f"pose recovery at {a.size}x{a.size}: {len(pairs)} oracle pairs ({a.scenes} sources x {len(MOTIONS)} motions), cached source features, 2 OpenCV threads")
    for name, est in (("ORB+AP3P PnP (reference)", FeaturePnP(dense=False)), ("ORB+AP3P PnP + dense refinement", FeaturePnP())):
        for key, src, _, _ in pairs: est.source_features(src, key)           # fill the cache (not timed)
        times, cpu, errs, passed, failed = [], [], [], 0, 0
        for key, src, m, tgt in pairs:
            t0, c0 = time.perf_counter(), time.process_time(); r = est.estimate(src, tgt.rgb, key=key)
            times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
            if r.pose is None: failed += 1; continue
            errs.append(rot_err(r.pose, tgt.pose))
            passed += pose_consistent(decompose(src.pose, r.pose), decompose(src.pose, tgt.pose), DOF_KINDS.index(m.kind))[0]
        print(f"  {name:34s} wall {1000 * statistics.median(times):6.2f} ms/pair, cpu {1000 * statistics.median(cpu):6.2f} ms   rot err median {np.median(errs):.3f} deg,"
              f" p90 {np.percentile(errs, 90):.2f} deg   pose-consistent {passed}/{len(pairs)}   unrecovered {failed}")


if __name__ == "__main__":
    main()
