"""`astra-wb demo` shows the learned policies' rows when a curriculum run exists under the runs root (the folder that
holds the demo's output), and says in one line how to make one when none does.

The curriculum run is made by the curriculum's own code at a minimal size (the tiny model, ten cold-start steps, one
GRPO step of the Phase 1 -> 2 arm), so its folder is what `astra-wb curriculum` writes; the demo is cut to a few
questions and its headline runs only."""
import contextlib, io, json, os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
import pytest
from astra_wb.curriculum import CurriculumConfig, run_curriculum
from astra_wb.demo import cli_demo, learned_ids
from astra_wb.synthqa import generate_bench
from astra_wb.eval import load_run
from astra_wb.tiny_vlm import cached_tiny_qwen3vl

N = 12
FAST = ["--n", str(N), "--ladder", "--controls", "--fill", "", "--ceiling", "", "--misleading", "", "--no-trajectories",
        "--workers", "1"]


def demo(out, *extra) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_demo(["--out", str(out), *FAST, *extra])
    return rc, buf.getvalue()


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    "A runs root holding a minimal curriculum run made by `run_curriculum` (the cold start fails its gate: flagged)."
    root = tmp_path_factory.mktemp("runs")
    cfg = CurriculumConfig(output_dir=str(root / "curriculum"), model=cached_tiny_qwen3vl(), train_n=4, heldout_n=2,
                           sft_steps=10, sft_max_steps=10, gate_every=10, gate_n=1, arms="phase1_2", rl_steps=1,
                           phase1_steps=1, prompts_per_step=2, num_generations=2, max_new_tokens=8, max_turns=2,
                           max_tool_rounds=1, forced_k=1, allow_failed_gate=True)
    run_curriculum(cfg, log=lambda m: None)
    return root


def test_without_a_run_the_demo_says_how_to_make_one(tmp_path):
    rc, text = demo(tmp_path / "demo")
    assert rc == 0
    hint = [l for l in text.splitlines() if l.startswith("learned policy: none under")]
    assert len(hint) == 1, text
    assert f"astra-wb curriculum --quick --allow-failed-gate --output-dir {tmp_path}/curriculum" in hint[0]
    assert not list(tmp_path.glob("demo/learned-*"))


def test_with_a_run_the_demo_shows_the_learned_rows(runs_root):
    run = runs_root / "curriculum"
    rc, text = demo(runs_root / "demo", "--learned-n", "2")
    assert rc == 0, text
    bench = generate_bench(N, seed=0)
    want_ids = sorted(learned_ids(bench, 2))
    assert len(want_ids) == 2 * len({s.meta["family"] for s in bench}) < N
    assert f"learned policies: cold start, phase1_2-s0 of the curriculum run {run}" in text
    assert f"Learned policies of the curriculum run {run}" in text and "FAILED the format gate" in text
    table = text.split("Learned policies of the curriculum run")[1]
    for name in ("cold start", "phase1_2-s0"):
        for mode in ("direct", "agentic"):
            assert f"learned {name} {mode}" in table
            folder = runs_root / "demo" / f"learned-curriculum-{name.replace(' ', '-')}-{mode}"
            r = load_run(folder)
            assert sorted(x["id"] for x in r.rows) == want_ids   # the first 2 of each family
            want = run / ("sft" if name == "cold start" else f"arms/{name}") / "final"
            assert r.config.policy == f"hf:{want.resolve()}" and r.config.simulator == "reproject"
            assert (r.config.agent.max_new_tokens, r.config.agent.max_turns, r.config.agent.temperature) == (8, 2, 0.0)
        assert f"learned {name}: agentic - direct, perspective:" in text
    assert "learned policy: none" not in text
    html = (runs_root / "demo" / "report.html").read_text()
    assert "Learned policies of the curriculum run" in html


def test_learned_can_be_named_or_skipped(runs_root, tmp_path):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_demo(["--out", str(tmp_path / "demo"), *FAST, "--learned", ""])
    text = buf.getvalue()
    assert rc == 0 and "learned policy" not in text and "Learned policies" not in text   # skipped: no rows, no hint
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli_demo(["--out", str(tmp_path / "demo2"), *FAST, "--learned", str(tmp_path)])
    assert rc == 2 and "not a curriculum run folder" in err.getvalue() and "Traceback" not in err.getvalue()
