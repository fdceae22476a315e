"""The console entry point and the package's import weight."""
import subprocess, sys


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
            "c.COMMANDS['wait'] = ('astra_wb.cli:_wait', 'test')\n"
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
