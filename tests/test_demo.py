"""The main job on a reduced synthetic bench: the shape the paper reports must hold.

Agentic beats Direct on questions that need imagination and matches it on the others; accuracy
falls as the simulator's pose noise grows; run folders, metrics with the paired change and the
HTML report are written; the CLI prints the table, the dial and the next steps.
"""
import json
from pathlib import Path

import pytest

pytest.importorskip("astra_wb.agent", reason="the agent loop is not installed")
pytest.importorskip("astra_wb.expert", reason="the expert policy is not installed")

from astra_wb.eval import load_run
from astra_wb.report import cli_demo

N = 60
NOISE = (0.6, 1.5)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    import io, contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_demo(["--out", str(out), "--n", str(N), "--noise-levels", *map(str, NOISE)])
    assert rc == 0
    return out, buf.getvalue()


def _split(run, flag):
    rows = [r for r in run.rows if r["needs_imagination"] is flag]
    return sum(r["correct"] for r in rows) / len(rows), rows


def test_agentic_beats_direct_where_imagination_is_needed(demo):
    out, _ = demo
    direct, agentic = load_run(out / "direct"), load_run(out / "agentic")
    d_need, rows = _split(direct, True)
    a_need, _ = _split(agentic, True)
    assert len(rows) >= 15
    assert a_need >= d_need + 0.2, (a_need, d_need)
    d_other, other = _split(direct, False)
    a_other, _ = _split(agentic, False)
    assert abs(a_other - d_other) <= 0.1, (a_other, d_other)
    assert agentic.metrics["delta"]["overall"] > 0 and agentic.metrics["tool_call_rate"] > 0
    assert direct.metrics["tool_call_rate"] == 0


def test_accuracy_falls_as_pose_noise_grows(demo):
    out, _ = demo
    accs = [load_run(out / "agentic").metrics["imagination"]["needs_imagination"]["accuracy"]]
    accs += [load_run(out / f"agentic-noise{x:g}").metrics["imagination"]["needs_imagination"]["accuracy"] for x in NOISE]
    assert accs[0] > accs[-1] + 0.15, accs
    assert all(b <= a + 0.05 for a, b in zip(accs, accs[1:])), accs


def test_outputs_and_printout(demo):
    out, text = demo
    for name in ("direct", "forced2", "agentic", *[f"agentic-noise{x:g}" for x in NOISE]):
        m = json.loads((out / name / "metrics.json").read_text())
        assert m["n"] == N and (name == "direct" or "delta" in m)
    html = (out / "report.html").read_text()
    assert "Quality dial" in html and "data:image" in html and "<script src=" not in html
    assert "Exact match (%) per category" in text and "Quality dial" in text and "astra-wb app" in text
    assert "needs imagination" in text and "(+" in text


def test_next_steps_point_the_app_at_the_demo_runs(demo):
    import re, sys
    out, text = demo
    m = re.search(r"astra-wb app --runs-root (\S+)", text)
    assert m, text
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path: sys.path.insert(0, str(root))
    pytest.importorskip("gradio")
    from apps.app import list_names
    assert {"direct", "agentic"} <= set(list_names(m.group(1), runs=True))
