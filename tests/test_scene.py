"Scene generation, the renderer against an independent ray caster, colour coding, cameras and scan folders."
import json, math
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from PIL import Image

from astra_wb.geometry import intrinsics, level_pose, backproject, look_at
from astra_wb.scene import (CATEGORIES, CATEGORY_NAMES, Frame, Scene, SceneObject, classify_pixels, load_scan, make_scene,
                            render, sample_cameras, visible_objects, write_scan)


def _open3d_depth_ids(scene, pose, K, W, H):
    "Depth and instance ids from Open3D's RaycastingScene over the same boxes as triangles."
    o3d = pytest.importorskip("open3d")
    rc = o3d.t.geometry.RaycastingScene()
    room = o3d.geometry.TriangleMesh.create_box(*scene.room_size)
    lut = {rc.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(room)): -1}
    for o in scene.objects:
        box = o3d.geometry.TriangleMesh.create_box(*o.size); box.translate(-o.size / 2)
        c, s = math.cos(math.radians(o.yaw_deg)), math.sin(math.radians(o.yaw_deg))
        T = np.eye(4); T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]; T[:3, 3] = o.center
        lut[rc.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(box.transform(T)))] = o.id
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) @ pose[:3, :3].T
    ans = rc.cast_rays(o3d.core.Tensor(np.concatenate([np.broadcast_to(pose[:3, 3], d.shape), d], -1).astype(np.float32)))
    t, g = ans["t_hit"].numpy(), ans["geometry_ids"].numpy()
    hit = np.isfinite(t)
    ids = np.array([lut.get(int(x), -1) for x in g.ravel()]).reshape(g.shape)
    return np.where(hit, t, 0), np.where(hit, ids, -1)


def test_render_agrees_with_open3d():
    scene = make_scene(4, n_objects=20)
    W, H = 96, 72
    K = intrinsics(W, H, 70)
    poses = sample_cameras(scene, 6, rng=3)
    for o in scene.objects[:3]:   # just outside a box's +x face, looking along it: the box is cut by the camera plane
        c, s = math.cos(math.radians(o.yaw_deg)), math.sin(math.radians(o.yaw_deg))
        eye = o.center + (o.size[0] / 2 + 0.05) * np.array([c, s, 0])
        poses.append(look_at(eye, eye + np.array([-s, c, -0.2])))
    poses.append(level_pose((0.05, 0.05, 0.3), 45, 30))                                 # in a corner, looking up
    for P in poses:
        f = render(scene, P, K, W, H)
        d, ids = _open3d_depth_ids(scene, P, K, W, H)
        assert (np.abs(f.depth - d) < 1e-3).mean() >= 0.999
        assert (f.ids == ids).mean() >= 0.999


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), fx=st.floats(0.05, 0.95), fy=st.floats(0.05, 0.95), fz=st.floats(0.05, 0.95),
       heading=st.floats(-180, 180), pitch=st.floats(-60, 60))
def test_every_pixel_lies_on_a_surface(seed, fx, fy, fz, heading, pitch):
    "From anywhere in the room, every pixel has depth and back-projects onto a wall or onto the box its id names."
    scene = make_scene(seed)
    P = level_pose(scene.room_size * [fx, fy, fz], heading, pitch)
    K = intrinsics(48, 32, 75)
    f = render(scene, P, K, 48, 32)
    assert (f.depth > 0).all()
    pts = backproject(f.depth.astype(np.float64), K, P).reshape(32, 48, 3)
    walls = pts[f.ids == -1]
    assert ((np.abs(walls) < 2e-3) | (np.abs(walls - scene.room_size) < 2e-3)).any(1).all()
    for o in scene.objects:
        p = pts[f.ids == o.id] - o.center
        c, s = math.cos(math.radians(o.yaw_deg)), math.sin(math.radians(o.yaw_deg))
        local = np.c_[c * p[:, 0] + s * p[:, 1], -s * p[:, 0] + c * p[:, 1], p[:, 2]]
        assert (np.abs(local) <= o.size / 2 + 2e-3).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 100_000), n=st.one_of(st.none(), st.integers(0, 20)))
def test_scene_json_round_trip(seed, n):
    scene = make_scene(seed, n)
    d = json.loads(json.dumps(scene.to_dict()))
    assert Scene.from_dict(d).to_dict() == scene.to_dict()
    assert all(o.category in CATEGORIES for o in scene.objects)
    if n is None: assert 5 <= len(scene.objects) <= 15


def test_malformed_scene_dicts_name_the_field():
    good = make_scene(1).to_dict()
    with pytest.raises(ValueError, match="objects"): Scene.from_dict({k: v for k, v in good.items() if k != "objects"})
    bad = json.loads(json.dumps(good)); bad["objects"][1]["id"] = 7
    with pytest.raises(ValueError, match=r"objects\[1\]\.id"): Scene.from_dict(bad)
    bad = json.loads(json.dumps(good)); bad["objects"][0]["center"] = "here"
    with pytest.raises(ValueError, match="malformed"): Scene.from_dict(bad)


def test_colours_identify_categories_across_scenes():
    "A pixel-only agent can read the category from the colour: hue classification matches the instance ids."
    K = intrinsics(96, 72, 70)
    hits = []
    for seed in range(6):
        scene = make_scene(seed)
        cats = np.array([CATEGORY_NAMES.index(o.category) for o in scene.objects] + [-1])
        for P in sample_cameras(scene, 2, rng=seed):
            f = render(scene, P, K, 96, 72)
            hits.append((classify_pixels(f.rgb) == cats[f.ids]).mean())
    assert min(hits) > 0.995


def test_hidden_objects_and_colour_override():
    scene = make_scene(9)
    K = intrinsics(80, 60, 70)
    P = sample_cameras(scene, 1, rng=0)[0]
    f = render(scene, P, K, 80, 60)
    vis = visible_objects(f, min_pixels=1)
    assert vis and sum(vis.values()) == (f.ids >= 0).sum()
    g = render(scene, P, K, 80, 60, hidden=list(vis))
    assert (g.ids == -1).all()
    blue = np.tile([0.0, 0.0, 255.0], (len(scene.objects), 1))
    h = render(scene, P, K, 80, 60, colors=blue)
    px = h.rgb[h.ids >= 0]
    assert (px[:, :2] == 0).all() and (px[:, 2] > 255 * 0.45 * 0.4 - 1).all()   # darkest face x darkest texture tile


def _hsv(rgb):
    x = np.asarray(rgb, np.float64) / 255.0
    mx, mn = x.max(-1), x.min(-1)
    return mx, np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-9), 0)


def test_object_texture_changes_brightness_only():
    "Objects carry a surface pattern for feature matching; it scales value only, so hue and saturation stay the category's."
    K = intrinsics(256, 256, 60)
    for seed in range(4):
        scene = make_scene(seed)
        for P in sample_cameras(scene, 2, rng=seed):
            f = render(scene, P, K, 256, 256)
            flat = render(scene, P, K, 256, 256, colors=np.array([CATEGORIES[o.category]["color"] for o in scene.objects], np.float32))
            for i in np.unique(f.ids[f.ids >= 0]):
                px = f.rgb[f.ids == i].astype(np.float64)
                v, sat = _hsv(px)
                bright = v > 0.3                                          # away from uint8 rounding of dark pixels
                assert np.allclose(sat[bright], 0.9, atol=0.03), (seed, i)
                assert v.std() > 0.03, (seed, i)                           # the pattern is there
                cat = CATEGORY_NAMES.index(scene.objects[i].category)
                assert (classify_pixels(px[None].astype(np.uint8))[0] == cat).mean() > 0.999
            assert np.array_equal(flat.rgb, f.rgb)                         # the colours argument is the same palette


def test_texture_is_fixed_to_the_surfaces():
    "The same surface point has the same colour from two viewpoints (what a feature matcher relies on)."
    scene, K = make_scene(4), intrinsics(192, 192, 60)
    a = render(scene, sample_cameras(scene, 1, rng=1)[0], K, 192, 192)
    from astra_wb.geometry import apply_motion, project
    b = render(scene, apply_motion(a.pose, "yaw", 10), K, 192, 192)
    pts = backproject(a.depth, K, a.pose)
    uv, z = project(pts, b.pose, K)
    u, v = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (u >= 0) & (u < 192) & (v >= 0) & (v < 192) & (z > 0)
    same = inside.copy()
    same[inside] = np.abs(b.depth[v[inside], u[inside]] - z[inside]) < 0.005        # visible in b, not occluded
    diff = np.abs(a.rgb.reshape(-1, 3)[same].astype(int) - b.rgb[v[same], u[same]].astype(int)).max(1)
    assert same.sum() > 5000 and np.median(diff) <= 4 and (diff <= 12).mean() > 0.8, (np.median(diff), (diff <= 12).mean())


def test_unshaded_render_casts_the_same_depth_and_ids():
    "`shade=False` (what scene sampling measures) gives the full render's depth and ids, and no image."
    scene, K = make_scene(2), intrinsics(160, 120, 60)
    for P in sample_cameras(scene, 3, rng=2):
        f, g = render(scene, P, K, 160, 120), render(scene, P, K, 160, 120, shade=False)
        assert g.rgb is None and (g.height, g.width) == (120, 160)
        assert np.array_equal(f.depth, g.depth) and np.array_equal(f.ids, g.ids)


def test_cameras_stand_in_free_space_and_see_objects():
    seen = []
    for seed in range(10):
        scene = make_scene(seed)
        for P in sample_cameras(scene, 3, rng=seed, eye_height=1.6):
            assert abs(P[2, 3] - 1.6) < 1e-9
            xy = P[:2, 3]
            for o in scene.objects:   # 0.4 m clearance around every footprint's bounding box
                fp = o.footprint()
                assert not ((fp.min(0) - 0.4 < xy) & (xy < fp.max(0) + 0.4)).all()
            seen.append(len(visible_objects(render(scene, P, intrinsics(64, 48, 70), 64, 48), min_pixels=20)) > 0)
    assert np.mean(seen) >= 0.9


def test_scannet_style_folder_with_larger_colour_images(tmp_path):
    "Like ScanNet: colour at a higher resolution than depth; the loader resizes colour and uses the depth intrinsics."
    scene = make_scene(2)
    K = intrinsics(64, 48, 60)
    frames = [render(scene, P, K, 64, 48) for P in sample_cameras(scene, 3, rng=1)]
    write_scan(frames, tmp_path)
    big_K = K.copy(); big_K[:2] *= 2
    K4 = np.eye(4); K4[:3, :3] = big_K
    np.savetxt(tmp_path / "intrinsic" / "intrinsic_color.txt", K4)
    for i, f in enumerate(frames):
        Image.fromarray(f.rgb).resize((128, 96), Image.NEAREST).save(tmp_path / "color" / f"{i}.jpg", quality=95)
    back = load_scan(tmp_path)
    assert [b.rgb.shape for b in back] == [(48, 64, 3)] * 3
    np.testing.assert_allclose(back[0].K, K)
    d16 = np.asarray(Image.open(tmp_path / "depth" / "0.png"))
    assert d16.dtype == np.uint16 and abs(int(d16[10, 10]) - round(frames[0].depth[10, 10] * 1000)) <= 1
    # the loader's bilinear resize of the written colour: off only by JPEG (the surface pattern is pixel-sized at 64x48,
    # so against the render itself the resize alone differs by ~6 grey levels)
    want = [np.asarray(Image.fromarray(f.rgb).resize((128, 96), Image.NEAREST).resize((64, 48), Image.BILINEAR)) for f in frames]
    assert all(np.abs(b.rgb.astype(int) - w).mean() < 2 for b, w in zip(back, want))


def test_scan_errors_name_the_file(tmp_path):
    scene = make_scene(2)
    K = intrinsics(32, 24, 60)
    write_scan([render(scene, P, K, 32, 24) for P in sample_cameras(scene, 2, rng=1)], tmp_path)
    (tmp_path / "depth" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match="1.png"): load_scan(tmp_path)
    Image.new("RGB", (32, 24)).save(tmp_path / "depth" / "1.png")
    with pytest.raises(ValueError, match="single-channel"): load_scan(tmp_path)
    with pytest.raises(ValueError, match="different intrinsics"):
        a = render(scene, level_pose((1, 1, 1.5)), K, 32, 24); b = render(scene, level_pose((1, 1, 1.5)), intrinsics(32, 24, 80), 32, 24)
        write_scan([a, b], tmp_path / "x")
