"""The app's root confinement and auth parsing, without a server: every user-typed name resolves
inside its root or is refused, symlinks out of a root are neither listed nor followed."""
import os, sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
from apps.app import PathError, list_names, parse_auth, safe_path   # noqa: E402

@pytest.fixture
def roots(tmp_path):
    root, outside = tmp_path / "runs", tmp_path / "outside"
    (root / "run-a" / "trajectories" / "q0").mkdir(parents=True)
    (root / "run-a" / "results.jsonl").write_text("{}\n")
    (root / "notes").mkdir()
    outside.mkdir(); (outside / "secret.txt").write_text("secret")
    (outside / "trajectories").mkdir()
    (root / "out-link").symlink_to(outside)                           # a folder symlinked out of the root
    (root / "run-a" / "leak").symlink_to(outside / "secret.txt")      # a file symlinked out of the root
    (root / "inside-link").symlink_to(root / "run-a")                 # a symlink that stays inside is fine
    (root / "loop").symlink_to(root / "loop")                         # a symlink loop: refused, never listed
    return root, outside

@pytest.mark.parametrize("name", ["", "..", "../outside", "run-a/../../outside", "run-a/../run-a", "/etc/passwd",
                                  "~", "~root", "run-a\\..\\..", "C:\\Windows", "run-a\x00", "out-link", "out-link/secret.txt",
                                  "run-a/leak", "%2e%2e%2foutside", "..%2Foutside", "no-such-run", "x" * 5000, "a/" * 3000,
                                  "loop"])
def test_safe_path_refuses(roots, name):
    root, _ = roots
    with pytest.raises(PathError): safe_path(root, name)

def test_safe_path_accepts_names_inside(roots):
    root, _ = roots
    assert safe_path(root, "run-a") == (root / "run-a").resolve()
    assert safe_path(root, "run-a/trajectories/q0") == (root / "run-a" / "trajectories" / "q0").resolve()
    assert safe_path(root, "inside-link") == (root / "run-a").resolve()
    assert safe_path(root, "./run-a") == (root / "run-a").resolve()

def test_list_names_stays_inside(roots):
    root, _ = roots
    assert list_names(root) == ["inside-link", "notes", "run-a"]             # out-link is not listed
    assert list_names(root, runs=True) == ["inside-link", "run-a"]          # folders with results or trajectories
    deep = list_names(root, depth=2)
    assert "run-a/trajectories" in deep and not any("leak" in n or "out-link" in n for n in deep)
    assert list_names(root / "missing") == []

def test_parse_auth():
    assert parse_auth("") is None and parse_auth(" , ") is None
    assert parse_auth("ann:pw1, bob:p:w2") == [("ann", "pw1"), ("bob", "p:w2")]
    for bad in ("ann", "ann:", ":pw"):
        with pytest.raises(ValueError, match="app_auth"): parse_auth(bad)


def test_app_refuses_a_busy_port_and_bad_auth_without_a_traceback(tmp_path, capsys, monkeypatch):
    import socket
    from apps.app import main
    monkeypatch.setenv("ASTRA_WB_APP_AUTH", "")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0)); busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port), "--data-root", str(tmp_path), "--runs-root", str(tmp_path)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    monkeypatch.setenv("ASTRA_WB_APP_AUTH", "alice")   # no password
    assert main(["--port", "1", "--data-root", str(tmp_path), "--runs-root", str(tmp_path)]) == 2
    assert "app_auth" in capsys.readouterr().err
