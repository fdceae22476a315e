"""Reprojection of a 512x512 RGB-D view into a moved camera: astra_wb.splat.reproject_views (numba
z-buffer forward splat) against a plain NumPy z-buffer built with np.minimum.at, in the same run.

Usage: python benchmarks/bench_reproject.py [--frames 30] [--size 512]
"""
from __future__ import annotations
import argparse, time
import numpy as np


def numpy_zbuffer(depth, rgb, K_src, T_src, K_tgt, T_tgt, W, H):
    "Reference: back-project, transform, project, np.minimum.at into a z-buffer, then pick the winning colours."
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    z = depth.ravel().astype(np.float64)
    ok = z > 0
    pc = np.stack([(u.ravel() - K_src[0, 2]) / K_src[0, 0] * z, (v.ravel() - K_src[1, 2]) / K_src[1, 1] * z, z], 1)[ok]
    M = np.linalg.inv(T_tgt) @ T_src
    q = pc @ M[:3, :3].T + M[:3, 3]
    front = q[:, 2] > 1e-3
    q, cols = q[front], rgb.reshape(-1, 3)[ok][front]
    tu = np.floor(q[:, 0] / q[:, 2] * K_tgt[0, 0] + K_tgt[0, 2]).astype(np.int64)
    tv = np.floor(q[:, 1] / q[:, 2] * K_tgt[1, 1] + K_tgt[1, 2]).astype(np.int64)
    inb = (tu >= 0) & (tu < W) & (tv >= 0) & (tv < H)
    idx, zz, cols = tv[inb] * W + tu[inb], q[inb, 2], cols[inb]
    zbuf = np.full(H * W, np.inf)
    np.minimum.at(zbuf, idx, zz)
    win = zz == zbuf[idx]
    out = np.full((H * W, 3), (255, 0, 255), np.uint8)
    out[idx[win]] = cols[win]
    return out.reshape(H, W, 3), np.isinf(zbuf).reshape(H, W)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=30); p.add_argument("--size", type=int, default=512)
    a = p.parse_args(argv)
    from astra_wb.geometry import intrinsics
    from astra_wb.motion import Motion
    from astra_wb.scene import make_scene, render, sample_cameras
    from astra_wb.simulators import View
    from astra_wb.splat import reproject_views
    S = a.size
    scene = make_scene(5, n_objects=15)
    K = intrinsics(S, S, 60)
    motions = [Motion("yaw", 20), Motion("forward", 0.8), Motion("lateral", -0.5), Motion("pitch", -15), Motion("vertical", 0.3)]
    cases = []
    for i, P in enumerate(sample_cameras(scene, a.frames, rng=1)):
        f = render(scene, P, K, S, S)
        cases.append((View(1, f.image, P, K, f.depth), f, motions[i % len(motions)].apply(P)))
    reproject_views([cases[0][0]], cases[0][2], K, S, S)           # compile / load the numba cache
    for label, kw in (("numba splat, square footprints + crack closing", {}), ("numba splat, 1-pixel footprints, no closing", dict(max_footprint=1.0, close_cracks=False))):
        t0 = time.perf_counter()
        for view, _, target in cases: reproject_views([view], target, K, S, S, **kw)
        t = (time.perf_counter() - t0) / len(cases) * 1e3
        print(f"{S}x{S} {label:50s}: {t:6.2f} ms/frame")
        if not kw: t_numba = t
        else: t_numba1 = t
    t0 = time.perf_counter()
    for view, f, target in cases: numpy_zbuffer(f.depth, f.rgb, K, view.pose, K, target, S, S)
    t_np = (time.perf_counter() - t0) / len(cases) * 1e3
    print(f"{S}x{S} {'NumPy np.minimum.at z-buffer (1-pixel footprints)':50s}: {t_np:6.2f} ms/frame")
    print(f"speed-up vs NumPy: {t_np / t_numba:.1f}x (full splat), {t_np / t_numba1:.1f}x (same 1-pixel splat)")
    # quality against the oracle: how often the warped colour matches a fresh render where not a hole
    agree, holes = [], []
    for view, f, target in cases:
        rgb, _, mask = reproject_views([view], target, K, S, S)
        truth = render(scene, target, K, S, S).rgb
        agree.append((np.abs(rgb.astype(int) - truth).max(-1) < 40)[~mask].mean()); holes.append(mask.mean())
    print(f"quality vs oracle render: colour agrees on {np.mean(agree):.2%} of non-hole pixels; holes {np.mean(holes):.2%} of pixels")


if __name__ == "__main__":
    main()
