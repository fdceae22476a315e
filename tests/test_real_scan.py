"""Real sensor data: ten frames of TUM RGB-D fr1/xyz in ScanNet's layout (tests/data/tum_fr1_xyz, CC BY 4.0) and a
real COCO detector (YOLOX-Nano ONNX through OpenCV, tests/data/models, Apache-2.0). Scan loading, reprojection,
pose recovery, coverage and content consistency are checked against the motion-capture poses and the Kinect depth,
not against the synthetic world."""
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from astra_wb.geometry import decompose
from astra_wb.scene import load_scan
from astra_wb.sim_quality import (COCO_CLASSES, Detection, FeaturePnP, OnnxDetector, content_scores, pose_consistent)
from astra_wb.simulators import View
from astra_wb.splat import reproject_views
from astra_wb.wm_data import (coverage, coverage_reference, is_diverse, make_wm_data, single_motion,
                              view_difference)

DATA = Path(__file__).parent / "data"
SCAN = DATA / "tum_fr1_xyz"
ONNX = DATA / "models" / "yolox_nano_coco_416.onnx"


@pytest.fixture(scope="module")
def frames():
    return load_scan(SCAN)


@pytest.fixture(scope="module")
def detector():
    return OnnxDetector(ONNX)


def rot_deg(Ra, Rb) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1))))


def test_load_scan_reads_the_real_frames(frames):
    assert len(frames) == 10
    f = frames[0]
    assert f.rgb.shape == (480, 640, 3) and f.depth.shape == (480, 640) and f.ids is None
    np.testing.assert_allclose(f.K, [[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]])
    valid = f.depth[f.depth > 0]
    assert 0.6 < (f.depth > 0).mean() <= 1 and 0.5 < np.median(valid) < 3.0      # metres, a desk seen from ~1 m
    for g in frames:
        R = g.pose[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
    path = sum(np.linalg.norm(b.pose[:3, 3] - a.pose[:3, 3]) for a, b in zip(frames, frames[1:]))
    assert 0.3 < path < 0.45                                                      # the camera travels ~0.39 m


def _view(f, index):
    return View(index, Image.fromarray(f.rgb), f.pose, f.K, f.depth)


def test_reprojection_of_each_frame_into_the_next_matches_its_depth(frames):
    "Frame i warped into camera i+1 (mocap poses, Kinect depth): its depth agrees with frame i+1's own depth."
    errors = []
    for a, b in zip(frames, frames[1:]):
        rgb, depth, hole = reproject_views([_view(a, 1)], b.pose, b.K, 640, 480)
        both = (depth > 0) & (b.depth > 0)
        assert both.mean() > 0.5
        errors.append(float(np.median(np.abs(depth[both] - b.depth[both]))))
    assert max(errors) < 0.02 and np.median(errors) < 0.01, errors               # metres
    # control: warped to a camera 5 cm off the true one, the colours disagree with frame i+1 far more
    a, b = frames[0], frames[1]
    off = b.pose.copy(); off[:3, 3] += off[:3, 0] * 0.05
    gray = lambda rgb: np.asarray(Image.fromarray(rgb).convert("L"), float)
    def photo_err(pose):
        rgb, depth, _ = reproject_views([_view(a, 1)], pose, b.K, 640, 480)
        return float(np.median(np.abs(gray(rgb) - gray(b.rgb))[depth > 0]))
    assert photo_err(b.pose) * 2 < photo_err(off)


def test_pose_recovery_on_real_pairs(frames):
    "Each frame located against the previous RGB-D frame; compared with the motion-capture pose."
    est = FeaturePnP()
    rot, trans = [], []
    for i, (a, b) in enumerate(zip(frames, frames[1:])):
        r = est.estimate(a, b.rgb, key=i)
        assert r.reason == "ok", (i, r)
        rot.append(rot_deg(r.pose[:3, :3], b.pose[:3, :3]))
        trans.append(float(np.linalg.norm(r.pose[:3, 3] - b.pose[:3, 3])))
        ok, why = pose_consistent(decompose(a.pose, r.pose), decompose(a.pose, b.pose), 2)
        assert ok, (i, why)
    assert np.median(rot) < 1.0 and max(rot) < 2.0, rot                          # degrees
    assert np.median(trans) < 0.02 and max(trans) < 0.05, trans                   # metres


def test_coverage_on_real_depth(frames):
    "Paper eq. 2 on Kinect depth (5 cm voxels): consecutive frames overlap, all the others cover the last, the sweep's ends do not."
    step = [coverage(b, [a], 0.05) for a, b in zip(frames, frames[1:])]
    assert min(step) > 0.6 and np.median(step) > 0.75, step
    assert coverage(frames[-1], frames[:-1], 0.05) > 0.9 > coverage(frames[-1], [frames[0]], 0.05)
    assert coverage(frames[0], [frames[-1]], 0.05) < 0.5                          # the first view saw far more than the last keeps
    for t, ctx in ((frames[1], [frames[0]]), (frames[-1], frames[:3])):
        assert coverage(t, ctx, 0.05) == pytest.approx(coverage_reference(t, ctx, 0.05), abs=2e-3)


def test_onnx_detector_finds_the_desk_objects(frames, detector):
    found = detector.detect(Image.fromarray(frames[0].rgb))
    names = {d.category for d in found}
    assert {"keyboard", "tv"} <= names and names <= set(COCO_CLASSES)
    for d in found:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480 and 0.3 <= d.score <= 1
    only = detector.detect(Image.fromarray(frames[0].rgb), ["keyboard"])
    assert only and {d.category for d in only} == {"keyboard"}
    with pytest.raises(ValueError, match="no categories"):
        detector.detect(Image.fromarray(frames[0].rgb), [])
    assert detector.detect(Image.new("RGB", (640, 480), (128, 128, 128))) == []   # a blank image holds no objects
    with pytest.raises(FileNotFoundError):
        OnnxDetector(DATA / "models" / "missing.onnx")


def test_content_consistency_with_a_real_detector(frames, detector):
    "Each real frame warped from the previous one (with its holes) keeps most objects in place; a mirrored view does not."
    warp, mirror = [], []
    for a, b in zip(frames, frames[1:]):
        target = detector.detect(Image.fromarray(b.rgb))
        assert len(target) >= 3
        same = content_scores(detector.detect(Image.fromarray(b.rgb)), target)
        assert same["precision"] == same["recall"] == 1.0                          # deterministic: agrees with itself
        warped = Image.fromarray(reproject_views([_view(a, 1)], b.pose, b.K, 640, 480)[0])
        warp.append(content_scores(detector.detect(warped), target))
        mirror.append(content_scores(detector.detect(Image.fromarray(np.ascontiguousarray(b.rgb[:, ::-1]))), target))
        blank = content_scores([], target)
        assert blank["recall"] == 0.0 and blank["precision"] == 0.0
    mean = lambda rows, k: float(np.mean([r[k] or 0.0 for r in rows]))
    assert mean(warp, "precision") > 0.6 and mean(warp, "recall") > 0.5, warp
    assert mean(mirror, "recall") < 0.2 and mean(mirror, "recall") + 0.3 < mean(warp, "recall")


def test_make_wm_data_keeps_nothing_from_a_small_real_scan(tmp_path):
    """The paper's thresholds on a real hand-held sweep of 0.39 m: no pair of frames moves >= 0.3 m (or turns >= 15 deg)
    along one component with the others still, and no pair is 1 m apart or 30 deg turned, so nothing is kept."""
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "tum").symlink_to(SCAN.resolve(), target_is_directory=True)
    summary = make_wm_data(tmp_path / "wm", scans=tmp_path / "scans", per_scene=4, progress=False)
    counts = summary["sources"]["scans"]
    assert counts["kept"] == 0 and counts["errors"] == 0
    assert counts["single_dof"] == counts["proposed"] > 0                         # every proposal fails the one-motion filter
    poses = [f.pose for f in load_scan(SCAN)]
    diffs = np.array([view_difference(p, q) for p, q in itertools.combinations(poses, 2)])
    assert diffs[:, 0].max() < 0.3 and diffs[:, 1].max() < 0.35 and diffs[:, 2].max() < 5 and diffs[:, 3].max() < 10
    assert not any(is_diverse(p, q) for p, q in itertools.combinations(poses, 2))
    assert all(single_motion(decompose(p, q)) is None for p, q in itertools.permutations(poses, 2))
