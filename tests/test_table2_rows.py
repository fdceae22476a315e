"""Two rows of the Table-2 recipe: pose consistency on the real scan (TUM RGB-D fr1/xyz, tests/data/tum_fr1_xyz)
under a relaxed one-motion rule with tolerances scaled to the motion's size, and the downstream table for a
learned policy given as a registry spec (a tiny Qwen3-VL built from a config)."""
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from astra_wb.geometry import decompose
from astra_wb.learned_sim import LearnedSim, LearnedSimConfig
from astra_wb.policies import PolicyError
from astra_wb.scene import load_scan
from astra_wb.sim_quality import PoseTolerance, pose_consistent
from astra_wb.simulators import get_simulator
from astra_wb.tune_wm import (SCAN_CEILING, ScanPairRule, cli_tune_wm, compose_motion, downstream, imagination_questions,
                              scaled_tolerance, scan_frames, scan_motion_stats, scan_pairs, scan_pose_rows, scan_table)

SCAN = Path(__file__).parent / "data" / "tum_fr1_xyz"


@pytest.fixture(scope="module")
def poses():
    return [f.pose for f in load_scan(SCAN)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "A run folder with untrained (tiny) checkpoints: the recipe's plumbing, not its numbers."
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    for stage in ("pretrained", "tuned"):
        LearnedSim(LearnedSimConfig(base=4, levels=2)).save_pretrained(out / stage)
    return out


def test_the_scan_rule_is_stated_by_its_statistics(poses):
    "The hand moved the camera along its optical axis, 40 degrees down: height and forward always mix."
    stats = scan_motion_stats(poses)
    assert (stats["pairs"], stats["one_unit"]) == (90, 54)
    assert stats["largest"] == {"vertical": 52, "pitch": 2} and stats["second"]["forward"] == 52
    assert stats["ratio_quantiles"][0.0] > 0.6 and stats["ratio_quantiles"][0.25] == 0.75
    pairs = scan_pairs(poses)
    assert len(pairs) == stats["qualifying"] == 14 and {k for _, _, k in pairs} == {2}
    assert scan_pairs(poses, ScanPairRule(max_ratio=0.6)) == []
    for i, j, k in pairs:
        u = np.abs(decompose(poses[i], poses[j])) / [0.1, 0.1, 0.1, 5, 5]
        assert u[k] >= 1 and np.delete(u, k).max() <= 0.75 * u[k]


def test_tolerance_scales_with_the_motion(poses):
    "A view that did not move fails a 0.10 m request once the tolerance is scaled; the unscaled one lets it pass."
    d = decompose(poses[5], poses[8])
    assert -0.11 < d[2] < -0.1
    np.testing.assert_allclose(decompose(poses[5], compose_motion(poses[5], d)), d, atol=0.02)
    still = np.array([0.0, 0.0, -0.01, 0.0, 0.0])
    assert pose_consistent(still, d, 2, scaled_tolerance(d, 2)) == (False, "magnitude")
    assert pose_consistent(still, d, 2, PoseTolerance())[0]
    assert pose_consistent(d * [1, 1, 0.7, 1, 1], d, 2, scaled_tolerance(d, 2)) == (True, "ok")
    assert scaled_tolerance([0.0, 0.0, 0.0, 20.0, 0.0], 3) == PoseTolerance()


def test_scan_rows_separate_reproject_from_copy(poses, run):
    "On real pairs the true target frame and `reproject` pass, the copy floor fails, a learned model is scored."
    frames = scan_frames(SCAN, 192)
    assert frames[0].rgb.shape == (144, 192, 3) and frames[0].depth.shape == (144, 192)
    np.testing.assert_allclose(frames[0].K[0, 0], 525 * 192 / 640)
    pairs = scan_pairs(poses)[::4]
    sims = {"copy": get_simulator("copy"), "reproject": get_simulator("reproject"),
            "learned": get_simulator(f"learned:{run / 'tuned'}")}
    rows = scan_pose_rows(sims, frames, pairs)
    assert set(rows) == {SCAN_CEILING, "copy", "reproject", "learned"} and all(len(r) == len(pairs) for r in rows.values())
    assert all(r["pose_ok"] for r in rows[SCAN_CEILING]) and all(r["pose_ok"] for r in rows["reproject"])
    assert not any(r["pose_ok"] for r in rows["copy"])
    assert all(r["pose_reason"] != "ok" or r["pose_ok"] for r in rows["learned"])


def test_scan_table_and_cli(run, tmp_path):
    summaries, rows, stats = scan_table(run, SCAN, width=128, progress=False)
    names = [s["simulator"] for s in summaries]
    assert names[0] == SCAN_CEILING and "oracle (privileged)" not in names and "reproject" in names
    assert all(s["n_pose"] == 14 and 0 <= s["pose_ci95"][0] <= s["pose_ci95"][1] <= 1 for s in summaries)
    none, _, st = scan_table(run, SCAN, ScanPairRule(max_ratio=0.5), width=128, progress=False)
    assert none == [] and st["qualifying"] == 0
    assert cli_tune_wm(["table2", str(run), "--scan", str(tmp_path / "missing"), "--test-set", str(tmp_path / "t"),
                        "--no-progress", "--no-downstream", "--per-source", "0"]) == 2


def test_downstream_takes_a_learned_policy_spec(run, tmp_path):
    "The learned policy plugs in by its registry spec, greedy, loaded once; rows say which policy they are."
    from astra_wb.tiny_vlm import cached_tiny_qwen3vl
    spec = f"hf:{cached_tiny_qwen3vl()}"
    qs, how = imagination_questions(12)
    rows, how2 = downstream(run, tmp_path / "ds", 12, policy=spec, simulators=["copy (floor)", "learned tuned"],
                            modes=("forced",), progress=False, max_new_tokens=8)
    assert how2 == how and [r["simulator"] for r in rows] == ["learned tuned", "copy (floor)"]   # the table's order
    for r in rows:
        assert r["policy"] == spec and r["n"] == len(qs) and r["mode"] == "forced"
        assert r["accuracy"] == r["correct"] / r["n"] and r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    cfgs = [json.loads(p.read_text()) for p in (tmp_path / "ds").glob("*/*/config.json")]
    assert len(cfgs) == 2 and all(c["policy"] == spec and c["max_new_tokens"] == 8 and c["temperature"] == 0 for c in cfgs)
    with pytest.raises(ValueError, match="unknown simulator rows"):
        downstream(run, tmp_path / "ds2", 12, simulators=["no such row"], progress=False)
    with pytest.raises(PolicyError):
        downstream(run, tmp_path / "ds3", 12, policy=f"hf:{tmp_path / 'nothing'}", progress=False)
    assert cli_tune_wm(["downstream", str(run), "--policy", f"hf:{tmp_path / 'nothing'}", "--no-progress"]) == 2
