"""`astra-wb curriculum --quick` end to end on the small preset: splits, teacher, cold start, the four arms,
held-out evaluation in every mode, the report; a rerun resumes (every stage skipped) and gives the same report.
The cold start's format gate is recorded, and the arms are refused from a checkpoint that failed it."""
import json, os
from dataclasses import replace
import pytest
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from astra_wb.curriculum import ARMS, EVAL_MODES, CurriculumConfig, GateError, run_curriculum
from astra_wb.small_vlm import build_small_qwen3vl


def test_curriculum_quick_end_to_end_and_resume(tmp_path):
    model = build_small_qwen3vl(tmp_path / "model", seed=0)
    cfg = CurriculumConfig(output_dir=str(tmp_path / "run"), model=model, quick=True)
    root = tmp_path / "run"
    with pytest.raises(GateError, match="failed its format gate"):   # 40 cold-start steps cannot write the format
        run_curriculum(cfg, log=lambda m: None)
    gate = json.loads((root / "sft" / "sft_summary.json").read_text())["gate"]
    assert gate["passed"] is False and gate["rows"] == 4 and [c["step"] for c in gate["checks"]] == [40]
    assert min(gate["last"]["call_valid"], gate["last"]["answer_valid"]) < 0.9
    assert not (root / "arms").exists()                                # refused: no arm trained
    cfg = replace(cfg, allow_failed_gate=True)
    logs = []
    report = run_curriculum(cfg, log=logs.append)
    assert any(m.startswith("[flag]") for m in logs)
    text = report.read_text()
    assert "Format gate FAILED" in text and "failed the gate" in text   # the arms are flagged
    for arm in ARMS:
        assert (root / "arms" / f"{arm}-s0" / "final" / "config.json").exists()
        assert f"| {arm}-s0 |" in text
        for mode in EVAL_MODES: assert len(json.loads((root / "eval" / f"{arm}-s0.{mode}.json").read_text())) == 6
    assert "## Goals" in text and (root / "curves.html").exists()
    rj = json.loads((root / "report.json").read_text())
    assert {g["goal"].split(":")[0] for g in rj["goals"]} >= {"tool-gain only", "usage bonus only"}
    logs2 = []
    run_curriculum(cfg, log=logs2.append)
    assert logs2 and all(m.startswith(("[skip]", "[flag]")) for m in logs2)   # resumable: nothing is redone
    assert report.read_text() == text
