"""Simulator quality on synthetic test sets: the oracle scores near-perfectly, the perturbed oracle's
scores fall as its pose noise grows, the reprojection simulator lands in between, and simulators
that ignore the motion or the reference image fail."""
import json

import numpy as np
import pytest
from PIL import Image

from astra_wb.geometry import apply_motion, decompose, intrinsics, DOF_KINDS
from astra_wb.motion import Motion
from astra_wb.protocol import Observation
from astra_wb.simulators import SimulatorError, get_simulator
from astra_wb.wm_data import WMDataConfig
from astra_wb.sim_quality import (ColorDetector, FeaturePnP, QualityConfig, build_test_set, cli_sim_quality, format_table,
                                  pose_consistent, score_simulators)

NOISE = (0.05, 0.15, 0.4)


class CopySource:
    "A 'simulator' that ignores the motion and returns the reference image unchanged."
    name = "copy-source"
    def imagine(self, sample, observations, reference_image, motion):
        return Observation(sample.images[reference_image - 1], len(sample.images) + 1, reference_image, motion, self.name)


class WrongReference:
    "The oracle, but it moves the camera of another context image than the one asked for."
    name = "wrong-reference"
    def __init__(self): self.oracle = get_simulator("oracle")
    def imagine(self, sample, observations, reference_image, motion):
        other = reference_image % len(sample.images) + 1
        return self.oracle.imagine(sample, observations, other, motion)


class Upscaled:
    "The oracle answering at twice the resolution (a generator with its own output size)."
    name = "upscaled"
    def __init__(self): self.oracle = get_simulator("oracle")
    def imagine(self, sample, observations, reference_image, motion):
        o = self.oracle.imagine(sample, observations, reference_image, motion)
        o.image = o.image.resize((o.image.width * 2, o.image.height * 2), Image.NEAREST)
        return o


class Broken:
    name = "broken"
    def imagine(self, sample, observations, reference_image, motion): raise SimulatorError("backend", "server down")


class Buggy:
    name = "buggy"
    def imagine(self, sample, observations, reference_image, motion): raise ZeroDivisionError("bug in a backend")


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    return build_test_set(tmp_path_factory.mktemp("simq") / "test", per_source=40, cfg=WMDataConfig(image_size=256, seed=11))


@pytest.fixture(scope="module")
def scores(test_set):
    sims = {"oracle": get_simulator("oracle"), "reproject": get_simulator("reproject")}
    sims |= {f"noise{n}": get_simulator(f"perturbed(oracle,pose_noise={n})") for n in NOISE}
    sims |= {"copy": CopySource(), "wrong-ref": WrongReference(), "broken": Broken(), "upscaled": Upscaled()}
    summaries, rows = score_simulators(sims, test_set)
    print("\n" + format_table(summaries))
    return {s["simulator"]: s for s in summaries}, rows


def test_test_set_is_built_once(test_set, tmp_path_factory):
    assert len(test_set) == 40
    assert len({s.sample_id for s in test_set}) == 40
    assert {s.source for s in test_set} == {"synth"}
    assert all(s.coverage >= 0.85 for s in test_set)


def test_oracle_is_consistent_over_all_samples(scores):
    s = scores[0]["oracle"]
    assert s["protocol"] == "pnp" and s["n_pose"] == s["n"] == 40     # every sample scored; unrecoverable = fail
    # measured 97.5 here (39 of 40 at 256 px); 98.5 / 100 / 99.5 on the 200-sample test sets of seeds 1000000, 1, 2 at
    # 384 px (benchmarks/bench_pose.py --test-sets). With ORB matches (the previous default) 90.0 here and 93.5-96.5 at
    # 384 px; before the objects had a surface pattern and the pose was matched against every context view, 72 %
    assert s["pose_consistency"] >= 97.0, s["pose_failures"]
    assert s["precision"] >= 0.95 and s["recall"] >= 0.95 and s["topology"] >= 0.95


def test_output_resolution_does_not_matter(scores):
    s = scores[0]["upscaled"]
    assert s["pose_consistency"] == scores[0]["oracle"]["pose_consistency"] and s["precision"] >= 0.95 and s["recall"] >= 0.95


def test_perturbed_scores_fall_as_pose_noise_grows(scores):
    s = scores[0]
    chain = [s["oracle"]] + [s[f"noise{n}"] for n in NOISE]
    for key in ("pose_consistency", "precision", "recall", "topology"):
        values = [c[key] for c in chain]
        assert all(a >= b for a, b in zip(values, values[1:])), (key, values)
        assert values[0] - values[-1] > (50.0 if key == "pose_consistency" else 0.4), (key, values)


def test_reproject_lands_in_between(scores):
    s = scores[0]
    worst = s[f"noise{NOISE[-1]}"]
    for key in ("pose_consistency", "precision", "recall", "topology"):
        assert worst[key] < s["reproject"][key] <= s["oracle"][key] + 1e-9, key
    assert s["reproject"]["precision"] < s["oracle"]["precision"]       # holes and stretched edges cost something


def test_motion_blind_and_misreferenced_simulators_fail(scores):
    s = scores[0]
    assert s["copy"]["pose_consistency"] <= 10.0
    assert s["wrong-ref"]["pose_consistency"] <= 30.0
    assert s["copy"]["recall"] < s["oracle"]["recall"]


def test_simulator_errors_are_failures_with_a_reason(scores):
    s, rows = scores
    assert s["broken"]["pose_consistency"] == 0.0
    assert set(s["broken"]["pose_failures"]) == {"simulator:backend"}
    assert all(r["precision"] == 0.0 for r in rows["broken"] if r["n_target"])


def test_a_crashing_simulator_does_not_stop_the_run(test_set):
    summaries, rows = score_simulators({"buggy": Buggy(), "oracle": get_simulator("oracle")}, test_set[:4])
    assert {r["pose_reason"] for r in rows["buggy"]} == {"simulator:crash"}
    assert "ZeroDivisionError" in rows["buggy"][0]["error"]
    assert len(rows["oracle"]) == 4


def test_verifiable_protocol_scores_a_named_subset(test_set):
    summaries, rows = score_simulators({"oracle": get_simulator("oracle")}, test_set[:10], cfg=QualityConfig(verify_pose=True))
    assert summaries[0]["protocol"] == "verifiable"
    assert summaries[0]["n_pose"] == sum(r["verifiable"] for r in rows["oracle"]) <= 10
    assert "pose protocol: verifiable" in format_table(summaries)


def test_pose_uses_every_context_view():
    "A target turned far from the source shares little with it; the other context views locate it."
    from astra_wb.scene import make_scene, render
    from astra_wb.geometry import level_pose
    scene, K = make_scene(3), intrinsics(256, 256, 60)
    X, Y = scene.room_size[:2]
    src = render(scene, level_pose([X / 2, Y / 2, 1.5], 0), K, 256, 256)
    other = render(scene, apply_motion(src.pose, "yaw", 60), K, 256, 256)     # another context view, 25 deg from the target
    tgt = render(scene, apply_motion(src.pose, "yaw", 85), K, 256, 256)
    alone = FeaturePnP(use_contexts=False).estimate(src, tgt.rgb)
    both = FeaturePnP().estimate(src, tgt.rgb, contexts=[src, other])
    assert alone.pose is None or not pose_consistent(decompose(src.pose, alone.pose), decompose(src.pose, tgt.pose), 3)[0]
    assert both.reason == "ok" and pose_consistent(decompose(src.pose, both.pose), decompose(src.pose, tgt.pose), 3)[0]


def test_pnp_recovers_rendered_motions():
    from astra_wb.scene import make_scene, render, sample_cameras
    scene, K = make_scene(21), intrinsics(384, 384, 60)
    est, errors, passed = FeaturePnP(), [], 0
    motions = [Motion("yaw", 25), Motion("yaw", -40), Motion("pitch", 15), Motion("lateral", 0.6), Motion("vertical", 0.4), Motion("forward", 0.8)]
    for seed in range(4):
        src = render(scene, sample_cameras(scene, 1, seed)[0], K, 384, 384)
        for m in motions:
            tgt = render(scene, m.apply(src.pose), K, 384, 384)
            r = est.estimate(src, tgt.rgb, key=f"src{seed}")
            if r.pose is None: continue
            R = np.linalg.inv(r.pose[:3, :3]) @ tgt.pose[:3, :3]
            errors.append(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))
            passed += pose_consistent(decompose(src.pose, r.pose), decompose(src.pose, tgt.pose), DOF_KINDS.index(m.kind))[0]
    assert len(errors) >= 18 and np.median(errors) < 0.5 and passed >= 16, (len(errors), np.median(errors), passed)
    assert len(est._cache) == 4


def test_cli_sim_quality(tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["--test-set", str(tmp_path / "ts"), "--per-source", "6", "--image-size", "128", "--simulator", "oracle", "--protocol", "pnp",
            "--simulator", "perturbed(oracle,pose_noise=0.3)", "--json", str(out), "--no-progress"]
    assert cli_sim_quality(argv) == 0
    text = capsys.readouterr().out
    assert "pose cons." in text and "perturbed(oracle,pose_noise=0.3)" in text and "pose protocol: pnp" in text
    report = json.loads(out.read_text())
    assert [s["n"] for s in report["summaries"]] == [6, 6]
    # the same test set again (not rebuilt), exact instance boxes for the targets (ids rendered from the stored scene)
    assert cli_sim_quality(["--test-set", str(tmp_path / "ts"), "--detector", "instances", "--json", str(out), "--no-progress",
                            "--protocol", "pnp"]) == 0
    rows = json.loads(out.read_text())["rows"]["oracle"]
    assert len(rows) == 6 and all(r["recall"] >= 0.5 for r in rows)
    capsys.readouterr()
    assert cli_sim_quality(["--test-set", str(tmp_path / "ts"), "--simulator", "no-such-sim", "--no-progress"]) == 2
    assert "no-such-sim" in capsys.readouterr().out
    # the default is the paper's protocol, which needs a depth model: one line, nothing built
    assert cli_sim_quality(["--test-set", str(tmp_path / "never"), "--no-progress"]) == 2
    assert "--depth-model" in capsys.readouterr().out and not (tmp_path / "never").exists()
    assert cli_sim_quality(["--test-set", str(tmp_path / "never"), "--no-progress", "--protocol", "pnp", "--detector", "hf:x"]) == 2
    assert "categories" in capsys.readouterr().out and not (tmp_path / "never").exists()
    for bad in (["--protocol", "magic"], ["--protocol", "pnp", "--detector", "magic"]):
        with pytest.raises(SystemExit):
            cli_sim_quality(["--test-set", str(tmp_path / "never"), "--no-progress"] + bad)
        assert not (tmp_path / "never").exists()                   # refused before building anything


def test_colour_detector_ignores_reported_holes():
    from astra_wb.scene import CATEGORIES
    img = np.full((64, 64, 3), 200, np.uint8)
    img[10:40, 10:40] = CATEGORIES["sofa"]["color"]    # a hole a simulator filled with an object's colour
    hole = np.zeros((64, 64), bool); hole[10:40, 10:40] = True
    assert [d.category for d in ColorDetector().detect(Image.fromarray(img))] == ["sofa"]
    assert ColorDetector().detect(Image.fromarray(img), mask=hole) == []   # pixels reported as holes are not scored


from hypothesis import given, settings, strategies as st
from astra_wb.sim_quality import Detection, content_scores, match_detections

_box = st.tuples(st.floats(0, 200), st.floats(0, 200), st.floats(5, 60), st.floats(5, 60)).map(lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3]))
_dets = st.lists(st.builds(Detection, st.sampled_from(["chair", "table", "lamp"]), _box), max_size=6)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(_dets, _dets, st.randoms(use_true_random=False))
def test_content_score_properties(gen, tgt, rnd):
    s = content_scores(gen, tgt)
    assert (s["precision"] is None) == (not gen and not tgt) and (s["recall"] is None) == (not tgt)   # undefined, never a free 1.0
    assert (s["precision"] is None or 0 <= s["precision"] <= 1) and (s["recall"] is None or 0 <= s["recall"] <= 1)
    assert s["topology"] is None or 0 <= s["topology"] <= 1
    m = match_detections(gen, tgt)
    assert len(set(m.values())) == len(m) and all(gen[g].category == tgt[t].category for t, g in m.items())   # one-to-one, same category
    shuffled = gen[:]; rnd.shuffle(shuffled)
    assert content_scores(shuffled, tgt)["n_matched"] == s["n_matched"]        # order of generated boxes does not matter
    same = content_scores(tgt, tgt)
    assert (same["precision"], same["recall"]) == ((1.0, 1.0) if tgt else (None, None))


def test_empty_against_empty_is_not_perfect_content():
    s = content_scores([], [])
    assert s["precision"] is None and s["recall"] is None
    from astra_wb.sim_quality import summarise_rows
    rows = [{"verifiable": True, "pose_ok": True, "kind": "yaw", "seconds": 0.0, **content_scores([], [])},
            {"verifiable": True, "pose_ok": True, "kind": "yaw", "seconds": 0.0,
             **content_scores([], [Detection("chair", (0, 0, 9, 9))])}]
    summary = summarise_rows(rows, "x")
    assert summary["precision"] == 0.0 and summary["recall"] == 0.0 and summary["n_content"] == 1
