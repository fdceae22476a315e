"""`astra-wb curriculum --quick` end to end on the small preset: splits, teacher, cold start, the four arms,
held-out evaluation in every mode, the report; a rerun resumes (every stage skipped) and gives the same report."""
import json, os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from astra_wb.curriculum import ARMS, EVAL_MODES, CurriculumConfig, run_curriculum
from astra_wb.small_vlm import build_small_qwen3vl


def test_curriculum_quick_end_to_end_and_resume(tmp_path):
    model = build_small_qwen3vl(tmp_path / "model", seed=0)
    cfg = CurriculumConfig(output_dir=str(tmp_path / "run"), model=model, quick=True)
    logs = []
    report = run_curriculum(cfg, log=logs.append)
    root = tmp_path / "run"
    text = report.read_text()
    for arm in ARMS:
        assert (root / "arms" / f"{arm}-s0" / "final" / "config.json").exists()
        assert f"| {arm}-s0 |" in text
        for mode in EVAL_MODES: assert len(json.loads((root / "eval" / f"{arm}-s0.{mode}.json").read_text())) == 6
    assert "## Goals" in text and (root / "curves.html").exists()
    rj = json.loads((root / "report.json").read_text())
    assert {g["goal"].split(":")[0] for g in rj["goals"]} >= {"tool-gain only", "usage bonus only"}
    logs2 = []
    run_curriculum(cfg, log=logs2.append)
    assert logs2 and all(m.startswith("[skip]") for m in logs2)   # resumable: nothing is redone
    assert report.read_text() == text
