"""Render RGB + depth + instance ids of a 6-wall + 30-object room: astra_wb.scene.render (numba)
against Open3D's RaycastingScene casting the same boxes as triangles, in the same run.

Prints ms/frame at 256x256 and 512x512, the speed-up, and the fraction of pixels where depth
(|dz| < 1 mm) and instance ids agree. Usage: python benchmarks/bench_render.py [--frames 50]
"""
from __future__ import annotations
import argparse, os, time
import numpy as np


def open3d_scene(scene):
    "RaycastingScene of the room (12 inward triangles) and each object box (12 triangles); geometry id -> instance id."
    import open3d as o3d
    rc = o3d.t.geometry.RaycastingScene()
    X, Y, Z = scene.room_size
    room = o3d.geometry.TriangleMesh.create_box(X, Y, Z)
    ids = {rc.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(room)): -1}
    for o in scene.objects:
        box = o3d.geometry.TriangleMesh.create_box(*o.size)
        box.translate(-o.size / 2)
        c, s = np.cos(np.radians(o.yaw_deg)), np.sin(np.radians(o.yaw_deg))
        T = np.eye(4); T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]; T[:3, 3] = o.center
        box.transform(T)
        ids[rc.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(box))] = o.id
    lut = np.full(max(ids) + 2, -1, np.int32)
    for g, i in ids.items(): lut[g] = i
    return rc, lut


def open3d_render(rc, lut, pose, K, W, H):
    "Depth (z, metres) and ids from Open3D: rays through pixel centres with camera-z = 1, so t_hit is z-depth."
    import open3d as o3d
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) @ pose[:3, :3].T
    rays = np.concatenate([np.broadcast_to(pose[:3, 3], d.shape), d], -1).astype(np.float32)
    ans = rc.cast_rays(o3d.core.Tensor(rays))
    t = ans["t_hit"].numpy()
    g = ans["geometry_ids"].numpy()
    hit = np.isfinite(t)
    ids = np.where(hit, lut[np.minimum(g, len(lut) - 1)], -1)
    return np.where(hit, t, 0).astype(np.float32), ids


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=50); p.add_argument("--objects", type=int, default=30)
    a = p.parse_args(argv)
    from astra_wb.geometry import intrinsics
    from astra_wb.scene import make_scene, render, sample_cameras
    scene = make_scene(11, n_objects=a.objects)
    poses = sample_cameras(scene, a.frames, rng=0)
    rc, lut = open3d_scene(scene)
    import numba
    print(f"numba threads {numba.get_num_threads()}; scene {scene.id}: room {np.round(scene.room_size, 2).tolist()} m, 6 walls + {len(scene.objects)} objects; "
          f"{a.frames} cameras; cpu threads available {os.cpu_count()}")
    def timed(fn):
        "(wall ms, cpu ms) per frame over all poses; cpu counts every thread of this process. Results are dropped as they come."
        w, c = time.perf_counter(), time.process_time()
        for P in poses: fn(P)
        return None, (time.perf_counter() - w) / len(poses) * 1e3, (time.process_time() - c) / len(poses) * 1e3
    for size in (256, 512):
        K = intrinsics(size, size, 60)
        buf = render(scene, poses[0], K, size, size)                # compile / load the numba cache
        render(scene, poses[0], K, size, size, parallel=True)
        open3d_render(rc, lut, poses[0], K, size, size)
        theirs, o_wall, o_cpu = timed(lambda P: open3d_render(rc, lut, P, K, size, size))
        ours, n_wall, n_cpu = timed(lambda P: render(scene, P, K, size, size))
        _, r_wall, r_cpu = timed(lambda P: render(scene, P, K, size, size, out=buf))
        _, p_wall, p_cpu = timed(lambda P: render(scene, P, K, size, size, out=buf, parallel=True))
        ours = [render(scene, P, K, size, size) for P in poses]
        theirs = [open3d_render(rc, lut, P, K, size, size) for P in poses]
        dz = np.concatenate([np.abs(f.depth - d).ravel() for f, (d, _) in zip(ours, theirs)])
        same_id = np.concatenate([(f.ids == i).ravel() for f, (_, i) in zip(ours, theirs)])
        print(f"{size}x{size}  Open3D RaycastingScene (depth+ids):       {o_wall:7.2f} ms/frame wall, {o_cpu:7.2f} ms cpu")
        print(f"{size}x{size}  numba render (RGB+depth+ids), new arrays: {n_wall:7.2f} ms/frame wall, {n_cpu:7.2f} ms cpu  -> {o_wall / n_wall:5.1f}x wall")
        print(f"{size}x{size}  numba render, out= buffers, 1 thread:    {r_wall:7.2f} ms/frame wall, {r_cpu:7.2f} ms cpu  -> {o_wall / r_wall:5.1f}x wall")
        print(f"{size}x{size}  numba render, out= buffers, parallel:    {p_wall:7.2f} ms/frame wall, {p_cpu:7.2f} ms cpu  -> {o_wall / p_wall:5.1f}x wall")
        par = render(scene, poses[1], K, size, size, parallel=True)
        same = all(np.array_equal(getattr(par, k), getattr(ours[1], k)) for k in ("rgb", "depth", "ids"))
        print(f"{size}x{size}  parallel output identical to one thread: {same}")
        print(f"{size}x{size}  agreement with Open3D: depth (|dz| < 1 mm) {np.mean(dz < 1e-3):.4%}, instance ids {same_id.mean():.4%}")

if __name__ == "__main__":
    main()
