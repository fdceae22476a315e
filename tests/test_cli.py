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
