"""The Gradio app through its API (gradio_client), launched in a subprocess on 127.0.0.1.

One app per module: Simulator (motion -> image, checked against the oracle render), Agent
(streaming run, human play), Runs (open, filter, browse), Annotate (label round trip through the
SQLite store) and path-traversal payloads that must never return file contents.
"""
import json, os, signal, socket, subprocess, sys, time, urllib.error, urllib.parse, urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
SECRET = "AWB-SECRET-7f3c9e"   # written outside the roots: no response may ever contain it

# ----------------------------------------------------------------------------- workspace
def _card(text, color, size=(96, 72)):
    im = Image.new("RGB", size, color)
    ImageDraw.Draw(im).text((6, 6), text, fill=(255, 255, 255))
    return im

def _trajectories():
    "Three hand-built trajectories: correct with a tool call, wrong without, invalid (no answer)."
    from astra_wb.geometry import intrinsics, level_pose
    from astra_wb.motion import Motion
    from astra_wb.protocol import Answer, Invalid, Invoke, Observation, Sample, Trajectory, Turn
    K, m = intrinsics(96, 72), Motion("forward", 1.0)
    def sample(i, answer):
        return Sample(id=f"q{i}", question=f"Question {i}: which side is the lamp on?", images=[_card(f"s{i} img1", (60, 90, 140))],
                      options={"A": "left", "B": "right"}, answer=answer, category=["PR", "Mot."][i % 2],
                      meta={"source": "synth"}, poses=[level_pose([1, 1, 1.5], 30)], intrinsics=[K])
    s0, s1, s2 = sample(0, "A"), sample(1, "B"), sample(2, "A")
    obs = Observation(image=_card("imagined", (130, 60, 150)), index=2, reference_image=1, motion=m, simulator="oracle",
                      pose=m.apply(s0.poses[0]), intrinsics=K)
    t0 = Trajectory(sample=s0, mode="agentic", policy="scripted", simulator="oracle", final_answer="A", turns=[
        Turn(text="<think>look</think>", action=Invoke(1, m, "Need to step forward."), observation=obs),
        Turn(text="<think>left</think><answer>A</answer>", action=Answer("A", "The lamp is on the left."))])
    t1 = Trajectory(sample=s1, mode="agentic", policy="scripted", final_answer="A",
                    turns=[Turn(text="<answer>A</answer>", action=Answer("A", "Guess."))])
    t2 = Trajectory(sample=s2, mode="agentic", policy="scripted", final_answer=None, valid=False,
                    turns=[Turn(text="{bad json", action=Invalid("json_error", "Expecting value"), feedback="not JSON")])
    return [t0, t1, t2]

def write_run(folder: Path, trajs, **config):
    "A run folder in the eval layout (config.json, results.jsonl, trajectories/<id>/, metrics.json)."
    from astra_wb.eval import EvalConfig, append_rows, result_row, traj_dirname, write_metrics
    from astra_wb.protocol import save_trajectory
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(EvalConfig(**config).to_dict()))
    rows = []
    for i, t in enumerate(trajs):
        rel = f"trajectories/{traj_dirname(t.sample.id)}"
        save_trajectory(t, folder / rel); rows.append(result_row(t, i, rel))
    append_rows(folder / "results.jsonl", rows); write_metrics(folder, rows)
    return folder

def build_workspace(root: Path) -> dict:
    "data/ and runs/ roots, a label DB path, a secret outside the roots and symlinks pointing out of them."
    root = Path(root)
    data, runs, outside = root / "data", root / "runs", root / "outside"
    data.mkdir(parents=True); runs.mkdir(parents=True); outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    write_run(runs / "run-a", _trajectories(), mode="agentic")
    write_run(outside / "evil-run", _trajectories()[:1], mode="agentic", name=SECRET)   # a real run, but outside
    (outside / "evil-run" / "metrics.json").write_text(json.dumps({"secret": SECRET}))
    os.symlink(outside / "evil-run", runs / "linked-run")            # symlinked run folder out of the root
    os.symlink(outside, data / "linked-data")                        # symlinked data folder out of the root
    (runs / "run-a" / "trajectories" / "leak").symlink_to(outside)   # symlink inside a run folder
    from astra_wb.benchmarks import write_mindcube_fixture
    from astra_wb.synthqa import export_bench, generate_bench
    export_bench(generate_bench(1, seed=5), data / "synth-bench")    # a benchmark folder under the data root
    write_mindcube_fixture(data / "mindcube", n=2)                    # real-benchmark format, no poses
    return dict(root=root, data=data, runs=runs, outside=outside, label_db=root / "labels.db")

# ----------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def launch_app(ws: dict, log_path: Path, extra_env: dict | None = None, timeout: float = 120.0):
    "Start `python -m apps.app` on 127.0.0.1 and a free port; return (process, base url)."
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "ASTRA_WB_SETTINGS": str(ws["root"] / "none.ini"),
           "GRADIO_TEMP_DIR": str(ws["root"] / "gradio_tmp"), "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    cmd = [sys.executable, "-m", "apps.app", "--host", "127.0.0.1", "--port", str(port), "--data-root", str(ws["data"]),
           "--runs-root", str(ws["runs"]), "--label-db", str(ws["label_db"])]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}/", time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None: raise RuntimeError(f"app exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2): return proc, url
        except urllib.error.HTTPError: return proc, url                 # answering (e.g. 401 behind auth): up
        except (urllib.error.URLError, ConnectionError, TimeoutError): time.sleep(0.3)
    stop_app(proc); raise RuntimeError(f"app did not start in {timeout}s:\n{log_path.read_text()[-3000:]}")

def stop_app(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try: proc.wait(10)
        except subprocess.TimeoutExpired: os.kill(proc.pid, signal.SIGKILL); proc.wait(10)

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    ws = build_workspace(tmp_path_factory.mktemp("app"))
    proc, url = launch_app(ws, ws["root"] / "app.log")
    from gradio_client import Client
    try: yield dict(ws, url=url, client=Client(url, verbose=False), proc=proc)
    finally: stop_app(proc)

def new_client(app):
    from gradio_client import Client
    return Client(app["url"], verbose=False)

def val(x):
    "The value of an output that may come back as a component update."
    return x["value"] if isinstance(x, dict) and x.get("__type__") == "update" else x

def img(x) -> np.ndarray:
    "An image output of the client (a file path or a dict with one) as an array."
    path = x["path"] if isinstance(x, dict) else x
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)

# ----------------------------------------------------------------------------- Simulator tab
def _load_scene(c, seed=3):
    return c.predict("synthetic scene", seed, "synth", "", 0, None, api_name="/load_sample")

def test_simulator_motion_gives_the_oracle_view(app):
    from astra_wb.geometry import intrinsics
    from astra_wb.motion import Motion
    from astra_wb.scene import make_scene, render, sample_cameras
    c = new_client(app)
    view0, ref, status = _load_scene(c)
    history, fig = c.predict(api_name="/views")
    assert "synth-000003" in status and val(ref) == 1 and len(history) == 2 and fig is not None
    view1, ref, status = c.predict(1, 1.5, 30, "oracle", api_name="/move_forward")
    assert "Image 3: imagined from image 1 after moving 1.5 meters forward" in status and val(ref) == 3
    history, fig = c.predict(api_name="/views")
    assert len(history) == 3 and history[0]["caption"] == "3 ← 1: move forward 1.5 m"       # newest first
    names = [t.get("name") for t in json.loads(fig["plot"])["data"]]
    assert "imagined" in names and "reference" in names                              # the map shows the cameras
    a0, a1 = img(view0), img(view1)
    assert a0.shape == a1.shape == (512, 512, 3) and np.abs(a0 - a1).mean() > 5      # the view changed
    scene, K = make_scene(3), intrinsics(512, 512, 60.0)                              # the app's scene 3, rebuilt here
    pose = Motion("forward", 1.5).apply(sample_cameras(scene, 2, rng=3)[0])
    want = render(scene, pose, K, 512, 512).rgb
    assert np.abs(a1 - want.astype(np.int16)).mean() < 1.0                            # exactly the oracle's render
    # chained from the imagined view (reference 3 now), then a typed instruction from image 2
    view2, ref, _ = c.predict(3, 1.0, 45, "oracle", api_name="/turn_left")
    assert np.abs(img(view2) - a1).mean() > 5 and val(ref) == 4
    view3, ref, status = c.predict(1, "Based on the viewpoint of image 2, pitch up 20 degrees.", "oracle", api_name="/imagine_text")
    assert "imagined from image 2" in status and val(ref) == 5
    assert len(c.predict(api_name="/views")[0]) == 5

def test_simulator_on_benchmark_samples(app):
    from gradio_client.exceptions import AppError
    c = new_client(app)
    view, ref, status = c.predict("benchmark sample", 0, "synth", "synth-bench", 0, None, api_name="/load_sample")
    assert "poses known" in status
    view1, ref, status = c.predict(1, 0.5, 30, "oracle", api_name="/move_right")
    assert "after moving 0.5 meters to the right" in status and np.abs(img(view1) - img(view)).mean() > 2
    for spec in ("reproject", "perturbed(oracle,pose_noise=0.2)"):                  # the other offered backends
        v, ref, status = c.predict(1, 0.5, 30, spec, api_name="/turn_right")
        assert status.endswith(f"· {spec}") and img(v).shape == img(view).shape
    view, ref, status = c.predict("benchmark sample", 0, "mindcube", "mindcube/raw", 1, None, api_name="/load_sample")
    assert "Loaded" in status and "poses known" not in status
    assert "need known camera poses" in status                      # explained at load: the controls stay off
    v, ref, status = c.predict(1, 1.0, 30, "oracle", api_name="/turn_left")   # the API still refuses, in words
    assert status.startswith("⚠ SimulatorError") and "Traceback" not in status
    assert c.predict("benchmark sample", 0, "mmsi", "mindcube", 0, None, api_name="/load_sample")[2].startswith("⚠ <data>/mindcube: no benchmark file")

def warned(out, *words):
    "A handler's status output after a user mistake: one '⚠' line with `words`, no traceback."
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    status = next((o for o in outs if isinstance(o, str) and o.startswith("⚠")), None)
    assert status is not None and "Traceback" not in status, out
    for w in words: assert w in status, (w, status)
    return status

def test_simulator_rejects_bad_requests(app):
    c = new_client(app)
    warned(c.predict(1, 1.0, 30, "oracle", api_name="/move_left"), "load a scene")
    _load_scene(c, seed=4)
    warned(c.predict(1, "fly to the moon", "oracle", api_name="/imagine_text"), "cannot read the instruction")
    warned(c.predict(9, 1.0, 30, "oracle", api_name="/move_up"), "reference image must be 1..2")    # not an offered image
    warned(c.predict(1, "Based on the viewpoint of image 9, move 1 meter up.", "oracle", api_name="/imagine_text"),
           "reference image must be 1..2")
    warned(c.predict(1, "Based on the viewpoint of image 1, move 9 meters forward.", "oracle", api_name="/imagine_text"),
           "exceeds the bound")
    warned(c.predict(1, 1.0, 30, "vllm-omni:http://10.0.0.1:1", api_name="/move_up"), "unknown simulator")  # not offered
    log = (app["root"] / "app.log").read_text()
    assert "astra-wb app: move_left: load a scene" in log and "Traceback" not in log   # one line per mistake

# ----------------------------------------------------------------------------- Agent tab
def test_agent_run_streams_turn_by_turn(app):
    c = new_client(app)
    job = c.submit("synth", "", 0, 1, "expert", "oracle", "agentic", 2, api_name="/agent_run")
    updates = list(job)
    assert len(updates) >= 2                                    # streamed, not one final answer
    chat, status, fig = updates[-1]
    assert status.startswith("done:") and fig is not None
    assert chat[0]["role"] == "user" and any("**Answer:" in str(m["content"]) for m in chat)
    assert len(updates[0][0]) < len(chat)                       # the conversation grew as it streamed

def test_agent_human_play(app):
    from gradio_client.exceptions import AppError
    c = new_client(app)
    warned(c.predict("looking", 1, "turn_left", 45, api_name="/human_call"), "start a game first")
    chat, status, _ = c.predict("synth", "", 0, 0, "human", "oracle", "agentic", 2, api_name="/agent_run")
    assert "Your turn" in status and len(chat) == 1
    chat, status, _ = c.predict("From an image that does not exist.", 9, "turn_left", 45, api_name="/human_call")
    assert status.startswith("That turn did not count: reference_image 9")   # judged by the loop's rules, in plain words
    assert "ground truth" not in json.dumps(chat) and "Result" not in json.dumps(chat)   # the game goes on, truth unseen
    warned(c.predict("", "Z", api_name="/human_answer"), "not an option")                     # does not end the game
    chat, status, _ = c.predict("I need the view to the left.", 1, "turn_left", 45, api_name="/human_call")
    assert "imagined from image 1 after turning 45 degrees to the left" in status
    files = [p for m in chat for p in (m["content"] if isinstance(m["content"], list) else [m["content"]])
             if isinstance(p, dict) and (p.get("file") or p.get("path"))]
    assert files, chat                                          # the imagined image is in the chat
    chat, status, _ = c.predict("Now I can see it.", "B", api_name="/human_answer")
    assert status.startswith("You answered B") and "ground truth" in json.dumps(chat)
    warned(c.predict("more", "A", api_name="/human_answer"), "finished")

# ----------------------------------------------------------------------------- Runs tab
def test_runs_open_filter_browse(app):
    c = new_client(app)
    choices = c.predict(api_name="/list_runs")
    names = [x[0] if isinstance(x, (list, tuple)) else x for x in choices["choices"]]
    assert names == ["run-a"]                                    # the symlinked run out of the root is not listed
    metrics, acc, tools, pos, head, html = c.predict(["run-a"], "all", api_name="/open_runs")
    table = [dict(zip(metrics["headers"], r)) for r in metrics["data"]]                # a table, one row per run
    assert [(r["run"], r["n"], r["accuracy"], r["acc PR"]) for r in table] == [("run-a", 3, 0.333, 0.5)]
    assert acc is not None and tools is not None
    assert head.startswith("run-a: 1 / 3") and "Question 0" in html and "<img" in html
    pos, head, html = c.predict("wrong", 2, api_name="/show_trajectory")                # numbered from 1, like the status
    assert head.startswith("run-a: 2 / 2 (wrong)") and "json_error" in html
    pos, head, html = c.predict("all", -4, api_name="/show_trajectory")                 # a negative number: the first
    assert pos == 1 and head.startswith("run-a: 1 / 3")
    pos, head, html = c.predict("used tool", 5, api_name="/show_trajectory")
    assert pos == 1 and "1 / 1" in head and "world_simulator(reference_image=1, motion_type=move_forward" in html

# ----------------------------------------------------------------------------- Annotate tab
def test_annotation_round_trip(app):
    from astra_wb.annotate import LabelStore
    from gradio_client.exceptions import AppError
    ann, bob = new_client(app), new_client(app)
    warned(ann.predict(api_name="/next_trajectory"), "log in first")
    assert "Logged in as **ann**" in ann.predict("ann", api_name="/login")
    assert "Queued 3 trajectories" in ann.predict("run-a", 0, 2, api_name="/queue_run")
    assert "already queued" in ann.predict("run-a", 0, 2, api_name="/queue_run")          # not "Queued 3" again
    status, html = ann.predict(api_name="/next_trajectory")
    tid = status.split("**")[1]
    assert tid.startswith("run-a/") and "<img" in html
    saved = ann.predict("missing_evidence", [], "imagination showed the lamp", 1, api_name="/save_label")
    assert saved.startswith("✓ saved missing_evidence") and "version 1" in saved
    with LabelStore(app["label_db"]) as s:                       # committed, in the store, as sent
        ev = s.current("ann", tid)
        assert (ev.label, ev.note, ev.turn, ev.version) == ("missing_evidence", "imagination showed the lamp", 1, 1)
    saved = ann.predict("observation_misused", ["over_trust"], "on second look", None, api_name="/save_label")
    assert "version 2" in saved                                  # an edit of the saved version
    with pytest.raises(AppError): ann.predict("no_such_label", [], "", None, api_name="/save_label")   # not an offered choice
    assert ann.predict(None, [], "", None, api_name="/save_label") == "⚠ not saved: choose a label first (keys 1-8 pick one)"
    bad = ann.predict("other", [], "", None, api_name="/save_label")          # 'other' needs a note
    assert bad.startswith("⚠ not saved") and "note" in bad
    # a second annotator is not served the trajectory ann holds, and agreement reports
    bob.predict("bob", api_name="/login")
    status, _ = bob.predict(api_name="/next_trajectory")
    assert status.split("**")[1] != tid
    summary, fig = ann.predict(api_name="/agreement")
    assert summary.startswith("No trajectory has labels from two annotators yet") and fig is None   # a hint, not a blank plot
    with LabelStore(app["label_db"]) as s:
        assert [e.version for e in s.events("ann", tid)] == [1, 2]

# ----------------------------------------------------------------------------- security
TRAVERSAL = ["../outside", "../outside/evil-run", "..", "../../", "%2e%2e%2foutside", "..%2Foutside", "/etc", str(Path("/etc/passwd")),
             "run-a/../../outside", "linked-run", "run-a/trajectories/leak", "~", "run-a\\..\\..\\outside", "run-a\x00"]

def test_runs_refuse_paths_out_of_the_root(app):
    from gradio_client.exceptions import AppError
    c = new_client(app)
    for payload in TRAVERSAL:
        try: out = c.predict([payload], "all", api_name="/open_runs")
        except AppError as e: assert SECRET not in str(e); continue
        warned(out); assert SECRET not in str(out), payload                 # refused, in words
    for payload in TRAVERSAL[:6] + ["linked-data"]:
        out = c.predict("benchmark sample", 0, "synth", payload, 0, None, api_name="/load_sample")
        warned(out); assert SECRET not in str(out), payload
    warned(c.predict("../outside/evil-run", 0, 2, api_name="/queue_run"), "not a name inside")
    warned(c.predict("linked-run", 0, 2, api_name="/queue_run"))

def _raw_call(url: str, api_name: str, data: list) -> str:
    "Call an endpoint over plain HTTP (no client-side upload): the SSE text of its result."
    req = urllib.request.Request(f"{url}gradio_api/call/{api_name}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r: event = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event}", timeout=60) as r: return r.read().decode()

def test_uploads_cannot_name_server_files(app):
    secret = str(app["outside"] / "secret.txt")
    for path in [secret, str(app["runs"] / "run-a" / "results.jsonl"), "/etc/passwd"]:
        files = [{"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}]
        out = _raw_call(app["url"], "load_sample", ["upload", 0, "synth", "", 0, files])
        assert "event: error" in out and "not uploaded by a user" in out, out[:300]
        assert SECRET not in out and "root:x:" not in out

def test_file_routes_serve_nothing_outside(app):
    ws, url = app, app["url"]
    secret = ws["outside"] / "secret.txt"
    paths = [str(secret), f"{ws['data']}/../outside/secret.txt", urllib.parse.quote(str(secret), safe=""),
             f"{ws['data']}/linked-data/secret.txt", "../" * 12 + str(secret).lstrip("/"),
             "..%2F" * 12 + urllib.parse.quote(str(secret).lstrip("/"), safe=""), str(ws["label_db"]), "/etc/passwd",
             str(ws["runs"] / "run-a" / "results.jsonl")]
    for p in paths:
        for route in ("gradio_api/file=", "file=", "gradio_api/file/"):
            try:
                with urllib.request.urlopen(url + route + p, timeout=10) as r: body = r.read()
            except urllib.error.HTTPError as e: body = e.read()
            assert SECRET.encode() not in body and b"root:x:" not in body and b'"correct"' not in body, (route, p)

def _listening(port: int) -> list[str]:
    "Local addresses (hex, from /proc/net/tcp*) listening on `port`."
    out = []
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(f).exists(): continue
        for line in Path(f).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == port: out.append(local.split(":")[0])
    return out

def test_binds_loopback_only(app):
    port = urllib.parse.urlparse(app["url"]).port
    addrs = _listening(port)
    assert addrs and set(addrs) <= {"0100007F"}, addrs          # 127.0.0.1 only, never 0.0.0.0 / ::
    info = json.loads(urllib.request.urlopen(app["url"] + "gradio_api/info", timeout=5).read())
    assert {"/move_forward", "/agent_run", "/open_runs", "/save_label"} <= set(info["named_endpoints"])


def test_runs_list_looks_inside_folders_of_runs(tmp_path):
    "After `astra-wb demo` the runs are in runs/demo/<name>: the Runs and Annotate lists show them (they were empty)."
    sys.path.insert(0, str(REPO))
    from apps.app import list_names
    for name in ("agentic", "direct"): write_run(tmp_path / "demo" / name, _trajectories()[:1], mode=name)
    write_run(tmp_path / "solo", _trajectories()[:1], mode="agentic")
    assert sorted(list_names(tmp_path, runs=True, depth=2)) == ["demo/agentic", "demo/direct", "solo"]
