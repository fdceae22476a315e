"""The main job on a reduced synthetic bench: the headline by evidence family with the non-privileged `reproject`
simulator, the quality ladder, the controls and the privileged ceiling, apart and labelled.

Agentic beats Direct on perspective questions and matches it where the given views suffice; the ladder costs accuracy
as it degrades; the controls (blank image, copied reference) stay below the real simulator; only the oracle row is
marked as reading the scene; run folders, metrics, the HTML report and the printout say all this.
"""
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("astra_wb.agent", reason="the agent loop is not installed")
pytest.importorskip("astra_wb.expert", reason="the expert policy is not installed")

from astra_wb.eval import load_run
from astra_wb.demo import cli_demo, DemoConfig, demo_configs, _fam_acc

N = 60
LADDER = ("reproject(depth_noise=0.1,pose_noise=0.1)", "reproject(depth_noise=0.3,pose_noise=0.3,max_views=1)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    import io, contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_demo(["--out", str(out), "--n", str(N), "--ladder", *LADDER])
    assert rc == 0
    return out, buf.getvalue()


def _folders(out):
    cfg = DemoConfig(n=N, ladder=LADDER)
    return {ec.label: out / name for name, ec in demo_configs(cfg)}


def test_headline_uses_reproject_and_agentic_beats_direct_on_perspective(demo):
    out, _ = demo
    direct, agentic = load_run(out / "direct"), load_run(out / "agentic")
    assert agentic.config.simulator == "reproject" and direct.metrics["tool_call_rate"] == 0
    d_p, n = _fam_acc(direct.rows, ("perspective",))
    a_p, _ = _fam_acc(agentic.rows, ("perspective",))
    assert n >= 10 and a_p >= d_p + 0.3, (a_p, d_p, n)
    d_d, _ = _fam_acc(direct.rows, ("direct",))
    a_d, _ = _fam_acc(agentic.rows, ("direct",))
    assert a_d == d_d
    assert all(r["n_tool_calls"] == 0 for r in agentic.rows if r["family"] == "direct")


def test_ladder_controls_and_ceiling(demo):
    out, _ = demo
    f = _folders(out)
    persp = lambda label: _fam_acc(load_run(f[label]).rows, ("perspective",))[0]
    ladder = [persp("agentic")] + [persp(f"agentic {s}") for s in LADDER]
    assert ladder[0] >= ladder[-1] + 0.2 and all(b <= a + 0.05 for a, b in zip(ladder, ladder[1:])), ladder
    for ctrl in ("blank", "copy"): assert persp(f"agentic {ctrl}") <= ladder[0] - 0.2, ctrl
    oracle = load_run(f["agentic oracle"])
    assert _fam_acc(oracle.rows, ("hidden",))[0] >= 0.9                     # only the privileged ceiling sees hidden answers
    assert {r["family"] for r in oracle.rows} <= {"perspective", "hidden"}   # the extra runs cover the viewpoint questions


def test_outputs_and_printout(demo):
    out, text = demo
    for name in ("direct", "forced2", "agentic"):
        m = json.loads((out / name / "metrics.json").read_text())
        assert m["n"] == N and (name == "direct" or "delta" in m)
    html = (out / "report.html").read_text()
    assert "Headline" in html and "privileged" in html and "data:image" in html and "<script src=" not in html
    headline = html.split("<h2>Headline</h2>")[1].split("<ul>")[0]
    assert "<table" in headline and "<pre>" not in headline and "<th>simulator (agentic)</th>" in headline   # tables, not a text block
    assert "by evidence family" in text and "hidden (control, not in All)" in text and "All (direct + perspective)" in text
    assert re.search(r"agentic - direct, perspective: [+-]\d+\.\d points, 95 % paired bootstrap interval \[", text)
    assert "Quality ladder" in text and "YES: privileged ceiling" in text and "Privileged access" in text
    oracle_lines = [l for l in text.splitlines() if "YES: privileged ceiling" in l]
    assert len(oracle_lines) == 1 and oracle_lines[0].startswith("oracle")
    assert "astra-wb app" in text and "Exact match (%) per category" in text


def test_next_steps_point_the_app_at_the_demo_runs(demo):
    import sys
    out, text = demo
    m = re.search(r"astra-wb app --runs-root (\S+)", text)
    assert m, text
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path: sys.path.insert(0, str(root))
    pytest.importorskip("gradio")
    from apps.app import list_names
    assert {"direct", "agentic"} <= set(list_names(m.group(1), runs=True))
