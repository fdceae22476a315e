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
