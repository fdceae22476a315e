"""Hostile files planted under the app's roots, over HTTP: FIFOs where files are expected answer at once
with an error (and never use up the workers), a trajectory.json that is a symlink out of its folder is
refused (its question never reaches the client), benchmark images named by absolute or '..' paths are
refused. Every wait has a timeout, so code that blocks fails here instead of hanging the suite."""
import concurrent.futures as cf, json, os, shutil

import pytest

from astra_wb.benchmarks import write_mindcube_fixture
from test_app import SECRET, build_workspace, launch_app, stop_app

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    ws = build_workspace(tmp_path_factory.mktemp("hostile"))
    runs, outside = ws["runs"], ws["outside"]
    for name in ("fifo-results", "fifo-traj", "link-traj"): shutil.copytree(runs / "run-a", runs / name)
    (runs / "fifo-results" / "results.jsonl").unlink(); os.mkfifo(runs / "fifo-results" / "results.jsonl")
    t = runs / "fifo-traj" / "trajectories" / "q0" / "trajectory.json"; t.unlink(); os.mkfifo(t)
    t = runs / "link-traj" / "trajectories" / "q0" / "trajectory.json"
    d = json.loads(t.read_text()); d["sample"]["question"] = f"{SECRET} question"
    (outside / "planted.json").write_text(json.dumps(d)); t.unlink(); t.symlink_to(outside / "planted.json")
    from PIL import Image
    Image.new("RGB", (9, 7), (250, 0, 0)).save(outside / "secret.png")
    for name, rel in (("mc-abs", str(outside / "secret.png")), ("mc-up", "../../outside/secret.png")):
        jl = write_mindcube_fixture(ws["data"] / name, n=1)
        row = json.loads(jl.read_text()); row["images"] = [rel]; jl.write_text(json.dumps(row) + "\n")
    jl = write_mindcube_fixture(ws["data"] / "mc-top", n=1)      # its jsonl moved to data/raw/: MindCube's image root
    row = json.loads(jl.read_text()); row["images"] = ["outside/secret.png"]   # guess looks two folders up, out of data/
    (ws["data"] / "raw").mkdir(); (ws["data"] / "raw" / jl.name).write_text(json.dumps(row) + "\n")
    proc, url = launch_app(ws, ws["root"] / "app.log")
    try: yield dict(ws, url=url)
    finally: stop_app(proc)

def _client(app):
    from gradio_client import Client
    return Client(app["url"], verbose=False)

def _open(app, run, timeout=30):
    "open_runs of `run`: ('ok', outputs) or ('error', message); a TimeoutError when the app does not answer."
    job = _client(app).submit([run], "all", api_name="/open_runs")
    try: return "ok", job.result(timeout=timeout)
    except cf.TimeoutError: raise
    except Exception as e: return "error", str(e)

def test_fifos_answer_at_once_and_free_the_workers(app):
    with cf.ThreadPoolExecutor(4) as ex:       # more FIFO requests than the app has workers (2)
        got = list(ex.map(lambda r: _open(app, r), ["fifo-results", "fifo-traj", "fifo-results", "fifo-traj"]))
    assert [k for k, _ in got] == ["error"] * 4, got
    kind, out = _open(app, "run-a")            # and the app still answers everyone
    assert kind == "ok" and "run-a: 1 / 3" in json.dumps(out)

def test_symlinked_trajectory_json_is_refused(app):
    kind, out = _open(app, "link-traj")
    assert kind == "error" and SECRET not in json.dumps(out), out

def test_benchmark_images_outside_the_data_root_are_not_served(app):
    "Simulator tab: a MindCube row naming an image by an absolute or '..' path gets an error, not the image."
    from gradio_client.exceptions import AppError
    for folder in ("mc-abs/raw", "mc-up/raw", "raw"):
        job = _client(app).submit("benchmark sample", 0, "mindcube", folder, 0, None, api_name="/load_sample")
        with pytest.raises(AppError, match="image") as e: job.result(timeout=30)
        assert str(app["data"].resolve()) not in str(e.value)     # the data root's own path is not shown
