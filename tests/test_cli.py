"""The console entry point and the package's import weight."""
import subprocess, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "astra_wb.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("demo", "eval", "app", "train", "sim-quality"):
        assert command in out.stdout


def test_import_is_light():
    code = ("import sys, astra_wb, astra_wb.cli; heavy = [m for m in ('torch', 'transformers', 'gradio') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ctrl_c_prints_a_note_not_a_traceback():
    import signal
    code = ("import sys, time, astra_wb.cli as c\n"
            "c._wait = lambda argv: (print('ready', flush=True), time.sleep(60))\n"
            "c.COMMANDS.register('wait', 'astra_wb.cli:_wait', 'test')\n"
            "sys.exit(c.main(['wait']))\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert "astra-wb wait: interrupted" in err and "Traceback" not in err


def test_every_command_prints_its_help():
    import contextlib, io
    from astra_wb.cli import COMMANDS, main
    for name in COMMANDS:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try: rc = main([name, "--help"])
            except SystemExit as e: rc = e.code
        assert rc == 0, name
        assert f"usage: astra-wb {name}" in buf.getvalue(), (name, buf.getvalue()[:200])
        if name in ("demo", "eval", "rollout"):   # every option of the commands researchers start with is explained
            lines = buf.getvalue().splitlines() + [""]
            bare = [l for l, nxt in zip(lines, lines[1:]) if l.startswith("  --") and len(l.split()) <= 2
                    and not nxt.startswith(" " * 8)]   # no help on the line, none wrapped onto the next
            assert not bare, (name, bare)


def _cli(*args, cwd=None):
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "astra_wb.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)


def test_mistyped_command_gets_a_suggestion():
    out = _cli("deom")
    assert out.returncode == 2 and "unknown command 'deom'; did you mean 'demo'?" in out.stderr


def test_eval_typo_writes_nothing_and_imports_nothing_heavy(tmp_path):
    "Fails on the old code: config.json was written before the mode was checked, so the corrected rerun was refused."
    run = tmp_path / "run"
    out = _cli("eval", "--mode", "agentc", "--limit", "2", "--synth-n", "4", "--out", run)
    assert out.returncode == 2 and "did you mean 'agentic'?" in out.stderr and "Traceback" not in out.stderr
    assert not run.exists()
    code = ("import sys, astra_wb.cli as c; rc = c.main(['eval', '--simulator', 'oracel', '--out', sys.argv[1]]); "
            "print(rc, [m for m in ('numba', 'cv2', 'torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True)
    assert out.stdout.split() == ["2", "[]"], out        # refused before the simulators (numba) or policies load
    assert "did you mean 'oracle'?" in out.stderr and not run.exists()
    out = _cli("eval", "--mode", "agentic", "--limit", "1", "--synth-n", "4", "--out", run)   # the corrected run
    assert out.returncode == 0, out.stderr
    assert "1/1" in out.stderr                           # a progress bar by default
    out = _cli("eval", "--mode", "agentic", "--limit", "2", "--synth-n", "4", "--out", run)
    assert out.returncode == 0 and f"resuming {run}: 1 rows already done, 1 to go" in out.stderr, out.stderr
    out = _cli("eval", "--mode", "agentic", "--limit", "2", "--synth-n", "4", "--out", run, "--no-progress")
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


def test_report_takes_a_folder_of_runs_and_never_writes_into_one_of_several(tmp_path):
    from test_app import _trajectories, write_run
    demo = tmp_path / "runs" / "demo"
    a = write_run(demo / "agentic", _trajectories(), mode="agentic")
    d = write_run(demo / "direct", _trajectories(), mode="direct")
    out = _cli("report", demo)
    assert out.returncode == 0, out.stderr
    assert (demo / "report.html").exists() and "agentic" in out.stdout and "direct" in out.stdout
    out = _cli("report", a, d, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "report.html").exists() and not (a / "report.html").exists()
    out = _cli("report", tmp_path / "runs" / "nothing-here")
    assert out.returncode == 2 and "not a run folder" in out.stderr and "Traceback" not in out.stderr
    out = _cli("annotate", "register", "--db", tmp_path / "labels.db", demo)    # a folder of runs here too
    assert out.returncode == 0 and "6 trajectories registered" in out.stdout, out.stderr
    out = _cli("annotate", "register", "--db", tmp_path / "labels.db", tmp_path)
    assert out.returncode == 2 and "no run folders inside it" in out.stderr and "Traceback" not in out.stderr


def test_annotate_export_takes_out_like_the_other_commands(tmp_path):
    from astra_wb.annotate import LabelStore
    db = tmp_path / "labels.db"
    with LabelStore(db) as s: s.register(["t1"]); s.save_label("ann", "t1", "missing_evidence")
    out = _cli("annotate", "export", "--db", db, "--out", tmp_path / "labels.jsonl")
    assert out.returncode == 0 and (tmp_path / "labels.jsonl").read_text().count("\n") == 2, out.stderr
    out = _cli("annotate", "export", "--db", db)
    assert out.returncode == 2 and "--out FILE" in out.stderr


def test_top_level_api_resolves_lazily():
    code = ("import sys, astra_wb as aw; light = not any(m in sys.modules for m in ('torch', 'transformers', 'gradio', 'numba')); "
            "names = [n for n in aw.__all__ if getattr(aw, n) is None]; "
            "print(light, aw.load_run.__module__, aw.rollout.__module__, names)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["True", "astra_wb.eval", "astra_wb.agent", "[]"], out
