"""`astra-wb eval` / `astra-wb report` end to end on a real-format benchmark file with a scripted policy."""
import json, subprocess, sys
from pathlib import Path

import pytest

from astra_wb.benchmarks import write_mmsi_fixture, write_mindcube_fixture

pytest.importorskip("astra_wb.agent", reason="the agent loop is not installed")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "astra_wb.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_eval_mmsi_direct_then_report(tmp_path):
    bench = write_mmsi_fixture(tmp_path / "mmsi", n=8)
    script = tmp_path / "turns.json"
    script.write_text(json.dumps(["<think>The chair is on the right.</think><answer>B</answer>"]))
    out = tmp_path / "run"
    r = _cli("eval", "--benchmark", "mmsi", "--path", bench, "--policy", f"scripted:{script}", "--simulator", "none",
             "--mode", "direct", "--limit", 6, "--out", out)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert [x["id"] for x in rows] == [str(i) for i in range(6)]
    assert [x["correct"] for x in rows] == [x["answer"] == "B" for x in rows]
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 6 and abs(m["accuracy"] - sum(x["answer"] == "B" for x in rows) / 6) < 1e-9
    assert m["tool_call_rate"] == 0 and "accuracy" in r.stdout
    # the same command again resumes: nothing to do, same metrics
    r2 = _cli("eval", "--benchmark", "mmsi", "--path", bench, "--policy", f"scripted:{script}", "--simulator", "none",
              "--mode", "direct", "--limit", 6, "--out", out)
    assert r2.returncode == 0 and json.loads((out / "metrics.json").read_text()) == m
    # a different run into the same folder is refused with a clear message
    r3 = _cli("eval", "--benchmark", "mmsi", "--path", bench, "--policy", f"scripted:{script}", "--mode", "agentic", "--out", out)
    assert r3.returncode == 2 and "holds a different run" in r3.stderr
    rep = _cli("report", out, "--out", tmp_path / "r.html")
    assert rep.returncode == 0, rep.stderr
    assert "exact match" in (tmp_path / "r.html").read_text().lower()


def test_eval_mindcube_overall_excludes_translation(tmp_path):
    jl = write_mindcube_fixture(tmp_path / "mc", n=8)
    script = tmp_path / "turns.json"; script.write_text(json.dumps(["<think>t</think><answer>A. a sofa</answer>"]))
    out = tmp_path / "run"
    r = _cli("eval", "--benchmark", "mindcube", "--path", jl, "--policy", f"scripted:{script}", "--simulator", "none",
             "--mode", "direct", "--out", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 8 and m["n_scored"] == 6 and list(m["per_group"]) == ["rotation", "around", "among", "translation"]


def test_eval_mmsi_with_a_real_hf_policy(tmp_path):
    "The real-benchmark path with a (tiny, random) transformers Qwen3-VL: every row is scored, none crashes the run."
    pytest.importorskip("transformers")
    from astra_wb.tiny_vlm import cached_tiny_qwen3vl
    model = cached_tiny_qwen3vl()
    bench = write_mmsi_fixture(tmp_path / "mmsi", n=3)
    out = tmp_path / "run"
    r = _cli("eval", "--benchmark", "mmsi", "--path", bench, "--policy", f"hf:{model}", "--simulator", "oracle",
             "--mode", "agentic", "--max-new-tokens", 12, "--max-turns", 2, "--out", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 3 and m["errors"] == 0 and m["n_scored"] == 3
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert all((out / x["trajectory"] / "trajectory.json").exists() for x in rows)


def test_eval_video_bench_sub_benchmarks_and_report(tmp_path):
    from astra_wb.video_bench import write_video_fixture
    path = write_video_fixture(tmp_path / "v", n=4)
    script = tmp_path / "turns.json"; script.write_text(json.dumps(["<think>t</think><answer>The answer is A.</answer>"]))
    out = tmp_path / "run"
    r = _cli("eval", "--benchmark", "mmsi-video", "--path", path, "--setting", "Sufficient-Coverage", "--policy", f"scripted:{script}",
             "--simulator", "none", "--mode", "direct", "--out", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert [x["correct"] for x in map(json.loads, (out / "results.jsonl").read_text().splitlines())] == [True, False, False, False]
    assert m["sub_benchmarks"]["(Robot)Avg"] == {"n": 2, "accuracy": 0.0}
    assert m["sub_benchmarks"]["(Indoor_Scene_Perception)Dynamic Scene"] == {"n": 2, "accuracy": 0.5}
    assert list(m["per_group"]) == ["Spatial Construction", "Motion Understanding", "Cross-Video", "Planning"]
    rep = _cli("report", out, "--out", tmp_path / "r.html")
    assert rep.returncode == 0 and "(Robot)Navigation" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("args, expect", [
    (["--benchmark", "nosuch"], "astra-wb eval: unknown benchmark 'nosuch'"),
    (["--policy", "nosuch"], "unknown policy 'nosuch'"),
    (["--simulator", "nosuch"], "unknown simulator 'nosuch'"),
])
def test_eval_user_errors_are_one_line_and_leave_no_run_folder(tmp_path, args, expect):
    bench = write_mmsi_fixture(tmp_path / "mmsi", n=2)
    out = tmp_path / "run"
    r = _cli("eval", "--benchmark", "mmsi", "--path", bench, "--mode", "agentic", "--out", out, *args)
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


def test_eval_help_explains_the_specs():
    r = _cli("eval", "--help")
    assert r.returncode == 0, r.stderr
    for text in ("hf:MODEL_DIR", "perturbed(oracle", "direct | forced | agentic", "(default: 'agentic')"):
        assert text in " ".join(r.stdout.split()), text


def test_merge_only_on_a_missing_run_names_it(tmp_path):
    r = _cli("eval", "--merge-only", "--out", tmp_path / "nope")
    assert r.returncode == 2 and "nope: not a run folder" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "nope").exists()
