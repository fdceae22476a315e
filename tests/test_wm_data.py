"""World-simulator SFT data: coverage and diversity on hand-built cameras with known answers, the
single-motion filter against geometry, scans and synthetic scenes end to end, parquet, resume, CLI."""
import json, math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from astra_wb.geometry import apply_motion, decompose, dominant_dof, intrinsics, level_pose, DOF_KINDS
from astra_wb.motion import Motion
from astra_wb import wm_data
from astra_wb.wm_data import (WMDataConfig, all_diverse, coverage, coverage_reference, is_diverse, make_wm_data,
                              plane_frame, propose_sets, read_wm_data, single_motion, view_difference, cli_make_wm_data)

K = intrinsics(128, 96, 60)
SIZE = (128, 96)


def wall(heading=0.0, pos=(0, 0, 1.5), pitch=0.0, **kw):
    return plane_frame(level_pose(list(pos), heading, pitch), K, SIZE, **kw)


def analytic_overlap(heading_deg: float) -> float:
    "Fraction of the wall patch seen by a level camera at the origin (heading 0) also inside the frustum of one turned by `heading_deg`."
    y, z = np.meshgrid(np.linspace(-1.732, 1.732, 1501), np.linspace(0.201, 2.799, 801))
    c, s = math.cos(math.radians(heading_deg)), math.sin(math.radians(heading_deg))
    zc, xc = 3 * c + y * s, 3 * s - y * c
    t = math.tan(math.radians(30))
    return float(((zc > 0) & (np.abs(xc / zc) <= t) & (np.abs((z - 1.5) / zc) <= 0.75 * t)).mean())


# ---------------------------------------------------------------- coverage

def test_coverage_known_answers():
    front = wall()
    assert coverage(front, [front]) == 1.0
    assert coverage(front, []) == 0.0
    assert coverage(front, [wall(180)]) == 0.0                       # looking away
    for h in (10, 20, 35):                                            # turned: the analytic overlap of the frusta
        assert coverage(front, [wall(h)], 0.1) == pytest.approx(analytic_overlap(h), abs=0.02)
    assert coverage(front, [wall(60)], 0.1) < 0.05                   # frusta no longer overlap


def test_coverage_is_occlusion_aware():
    front = wall()
    # the camera 1 m behind sees the whole patch in its frustum, but a wall segment hides y >= 0
    blocked = wall(pos=(-1, 0, 1.5), occluder=(1.0, 0.0, 5.0))
    clear = wall(pos=(-1, 0, 1.5))
    assert coverage(front, [clear], 0.1) > 0.98
    assert coverage(front, [blocked], 0.1) == pytest.approx(0.5, abs=0.02)
    other_half = wall(pos=(-1, 0, 1.5), occluder=(1.0, -5.0, 0.0))
    assert coverage(front, [blocked, other_half], 0.1) > 0.98


def test_coverage_matches_numpy_reference_and_falls_back():
    front = wall()
    ctx = [wall(25, pos=(0.3, -0.5, 1.4)), wall(-15, pos=(-0.5, 0.4, 1.7), pitch=10)]
    for voxel in (0.03, 0.05, 0.1):
        for stride in (1, 2):
            assert coverage(front, ctx, voxel, stride) == pytest.approx(coverage_reference(front, ctx, voxel, stride), abs=2e-3)
    # a grid too large for the bitmap falls back to the sorted-key reference and gives the same answer
    assert coverage(front, ctx, 0.05, max_cells=10) == pytest.approx(coverage_reference(front, ctx, 0.05), abs=1e-12)


def test_coverage_rejects_bad_voxel_and_empty_target():
    with pytest.raises(ValueError, match="voxel_size"):
        coverage(wall(), [wall()], 0.0)
    empty = wall(180)                 # sees no wall at all: no valid depth
    assert coverage(empty, [wall()]) == 0.0


# ---------------------------------------------------------------- diversity

# App. A.1: "for any pair of context cameras, at least one of the following conditions must hold":
# (3) xy >= 1 m or |dz| >= 1 m; (4) |dyaw| >= 30 deg or |dpitch| >= 30 deg. `strict` asks for both.
@pytest.mark.parametrize("b, paper, strict", [
    (level_pose([1.2, 0, 1.5], 40), True, True),          # 1.2 m apart, 40 deg turned
    (level_pose([0.99, 0, 1.5], 40), True, False),        # just under 1 m apart, but turned
    (level_pose([0.6, 0.6, 1.5], 40), True, False),       # 0.85 m in xy, turned
    (level_pose([2.0, 0, 1.5], 0), True, False),          # a 2 m sideways step, same heading
    (level_pose([0, 0, 1.5], 60), True, False),           # a 60 deg turn on the spot
    (level_pose([0, 0, 2.6], 0, 35), True, True),         # 1.1 m up, pitched 35
    (level_pose([0, 0, 2.6], 0, 25), True, False),        # 1.1 m up, pitch 25 and same yaw
    (level_pose([3, 0, 1.5], 29), True, False),           # far, turned only 29
    (level_pose([3, 0, 1.5], -31), True, True),           # far, turned 31 the other way
    (level_pose([0, 3, 1.5], 180), True, True),
    (level_pose([0.6, 0.6, 1.5], 29), False, False),      # 0.85 m and 29 deg: neither
    (level_pose([0, 0, 2.4], 0, 29), False, False),       # 0.9 m up and 29 deg pitch: neither
])
def test_diversity_pairs(b, paper, strict):
    a = level_pose([0, 0, 1.5], 0)
    assert is_diverse(a, b) is paper                  # the paper's rule is the default
    assert is_diverse(b, a) is paper                  # symmetric
    assert is_diverse(a, b, WMDataConfig(diversity="strict")) is strict


def test_diversity_rule_is_checked():
    with pytest.raises(ValueError, match="diversity"):
        is_diverse(level_pose([0, 0, 1.5], 0), level_pose([3, 0, 1.5], 0), WMDataConfig(diversity="and"))


def test_diversity_wraps_yaw_and_checks_every_pair():
    assert view_difference(level_pose([0, 0, 1.5], 170), level_pose([0, 2, 1.5], -170))[2] == pytest.approx(20)
    a, b, c = level_pose([0, 0, 1.5], 0), level_pose([2, 0, 1.5], 90), level_pose([0, 2, 1.5], 180)
    assert all_diverse([a, b, c])
    assert not all_diverse([a, b, level_pose([2.5, 0.2, 1.5], 100)])   # b and the third are too close and too alike
    far_only = WMDataConfig(min_xy=2.5, min_dz=2.5, diversity="strict")
    assert not all_diverse([a, b, c], far_only)


# ---------------------------------------------------------------- single dominant motion

@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.floats(-3, 3), min_size=3, max_size=3), st.lists(st.floats(-60, 60), min_size=2, max_size=2))
def test_single_motion_agrees_with_dominant_dof(t, r):
    d = np.array(t + r)
    cfg = WMDataConfig(still_trans=0.2, min_trans=0.2, still_rot=10.0, min_rot=10.0, round_m=0.01, round_deg=0.01)
    m = single_motion(d, cfg)
    i = dominant_dof(d, 0.2, 10.0)
    near_boundary = np.any(np.isclose(np.abs(d[:3]), 0.2, atol=1e-9)) or np.any(np.isclose(np.abs(d[3:]), 10.0, atol=1e-9))
    if near_boundary: return
    if m is None: assert i is None or abs(d[i]) > (5.0 if i < 3 else 90.0 if i == 4 else 180.0) or abs(round(d[i], 2)) == 0
    else:
        assert DOF_KINDS[i] == m.kind and m.value == pytest.approx(d[i], abs=0.006)


def test_single_motion_recovers_applied_motions():
    src = level_pose([2, 3, 1.5], 37, -12)
    for m in (Motion("lateral", -1.5), Motion("forward", 2.0), Motion("vertical", 0.45), Motion("yaw", 75), Motion("pitch", -20)):
        assert single_motion(decompose(src, m.apply(src))) == m
    assert single_motion(decompose(src, Motion("yaw", 5).apply(src))) is None          # below min_rot
    two = Motion("pitch", 20).apply(Motion("forward", 1).apply(src))
    assert single_motion(decompose(src, two)) is None


# ---------------------------------------------------------------- camera sets end to end

@pytest.fixture(scope="module")
def grid_scan(tmp_path_factory):
    "A ScanNet-style scan of one synthetic room: positions 1 m apart, headings every 30 degrees."
    from astra_wb.scene import make_scene, render, write_scan
    scene = make_scene(3)
    Kg = intrinsics(96, 96, 60)
    frames = [render(scene, level_pose([x, y, 1.5], h, -10), Kg, 96, 96)
              for x in (2.0, 3.0) for y in (2.0, 3.0) for h in range(0, 360, 30)]
    root = tmp_path_factory.mktemp("scans")
    write_scan(frames, root / "scans" / "grid0")
    return root / "scans", frames


def test_propose_sets_on_a_scan_respects_every_filter(grid_scan):
    _, frames = grid_scan
    cfg, counts = WMDataConfig(voxel_size=0.1), {}
    got = propose_sets(frames, 6, cfg, np.random.default_rng(0), counts)
    assert len(got) == 6
    assert counts["proposed"] == sum(counts.get(k, 0) for k in wm_data.FILTERS) + counts["kept"]   # every proposal accounted for
    for s in got:
        src = s.contexts[s.source_index]
        assert 2 <= len(s.contexts) <= 3 and s.coverage >= 0.85
        assert all_diverse([f.pose for f in s.contexts], cfg)
        assert single_motion(decompose(src.pose, s.target.pose), cfg) == s.motion
        assert s.prompt == f"Based on the viewpoint of image {s.source_index + 1}, {s.motion.instruction()}."
        assert not any(f is s.target for f in s.contexts)


def test_strict_coverage_rejects_everything(grid_scan):
    _, frames = grid_scan
    counts = {}
    assert propose_sets(frames, 2, WMDataConfig(min_coverage=1.01, attempts_per_sample=10), np.random.default_rng(0), counts) == []
    assert counts["coverage"] > 0 and counts["kept"] == 0


def test_make_wm_data_from_scans_and_synthetic_loads_in_datasets(grid_scan, tmp_path):
    scans, _ = grid_scan
    out = tmp_path / "wm"
    summary = make_wm_data(out, scans=scans, n_synthetic=2, per_scene=3, cfg=WMDataConfig(voxel_size=0.1, image_size=64), progress=False)
    assert summary["sources"]["scans"]["kept"] == 3 and summary["sources"]["synth"]["kept"] == 6
    assert json.loads((out / "summary.json").read_text())["sources"] == summary["sources"]
    import datasets
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert ds.num_rows == 9
    row = ds[0]
    assert row["context_images"][0].mode == "RGB" and len(row["decomposition"]) == 5 and len(row["target_pose"]) == 16
    samples = read_wm_data(out)
    synth = [s for s in samples if s.source == "synth"]
    assert synth and all(s.scene is not None for s in synth)
    s = synth[0]
    np.testing.assert_allclose(s.motion.apply(s.contexts[s.source_index].pose), s.target.pose, atol=1e-9)


def test_make_wm_data_resumes_after_a_crash(tmp_path, monkeypatch):
    real = wm_data._scene_samples
    calls = []

    def crash_on_second(source, arg, *a, **kw):
        calls.append(arg)
        if len(calls) == 2: raise KeyboardInterrupt
        return real(source, arg, *a, **kw)

    cfg = WMDataConfig(image_size=64, voxel_size=0.1)
    monkeypatch.setattr(wm_data, "_scene_samples", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        make_wm_data(tmp_path, n_synthetic=3, per_scene=2, cfg=cfg, progress=False)
    assert len(list((tmp_path / "stats").glob("*.json"))) == 1      # the first scene is done, the second not recorded
    monkeypatch.setattr(wm_data, "_scene_samples", real)
    calls.clear()
    summary = make_wm_data(tmp_path, n_synthetic=3, per_scene=2, cfg=cfg, progress=False)
    assert summary["sources"]["synth"]["scenes"] == 3 and summary["sources"]["synth"]["kept"] == 6
    ids = [s.scene_id for s in read_wm_data(tmp_path)]
    assert len(ids) == 6 and len(set(ids)) == 3


def test_a_bad_scan_is_recorded_and_skipped(grid_scan, tmp_path):
    scans, _ = grid_scan
    import shutil
    root = tmp_path / "scans"
    shutil.copytree(scans / "grid0", root / "good")
    (root / "broken").mkdir(parents=True)                             # no color/depth/pose folders
    summary = make_wm_data(tmp_path / "wm", scans=root, per_scene=2, cfg=WMDataConfig(voxel_size=0.1), progress=False)
    assert summary["sources"]["scans"]["errors"] == 1 and summary["sources"]["scans"]["kept"] == 2
    err = json.loads((tmp_path / "wm" / "stats" / "scans-broken.json").read_text())["error"]
    assert "broken" in err and "missing" in err


def test_row_errors_name_the_row_and_field(tmp_path):
    with pytest.raises(ValueError, match=r"row 'r7'.*target_image"):
        wm_data.row_to_sample({"id": "r7", "context_images": [], "context_depths": [], "context_poses": [], "context_intrinsics": []})


def test_cli_make_wm_data(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_make_wm_data([str(out), "--synthetic", "1", "--per-scene", "2", "--image-size", "64", "--voxel-size", "0.1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "synth" in text and "kept" in text
    assert len(read_wm_data(out)) == 2
    assert cli_make_wm_data([str(tmp_path / "x"), "--scans", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_make_wm_data([str(tmp_path / "y")])                      # neither --scans nor --synthetic


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(-60, 60), st.floats(-1.5, 0.5), st.floats(-1, 1), st.floats(-20, 20)), min_size=1, max_size=3),
       st.sampled_from([0.05, 0.1, 0.2]))
def test_coverage_properties(views, voxel):
    "In [0, 1]; a view covers itself; more context never lowers coverage; equals the NumPy reference."
    target = wall(10, pos=(0, 0.2, 1.5))
    ctx = [plane_frame(level_pose([x, y, 1.5], h, p), intrinsics(48, 36, 60), (48, 36)) for h, x, y, p in views]
    covs = [coverage(target, ctx[:k], voxel) for k in range(len(ctx) + 1)]
    assert covs[0] == 0.0 and all(0.0 <= c <= 1.0 for c in covs)
    assert all(a <= b + 1e-12 for a, b in zip(covs, covs[1:]))
    assert coverage(target, ctx + [target], voxel) == 1.0
    assert covs[-1] == pytest.approx(coverage_reference(target, ctx, voxel), abs=2e-3)
