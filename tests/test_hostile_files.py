"""Hostile files handed to the loaders: planted symlinks and FIFOs, hostile JSON (deep nesting, huge
integers, non-UTF-8 bytes, U+2028 inside strings), wrong types and pathological paths. Every loader
answers with its own error (a ValueError naming the file, line and field) or reads the valid file;
none hangs, none raises a raw exception. FIFO checks run in a daemon thread with a timeout and the
FIFO is opened for writing afterwards, so code that blocks fails here instead of hanging the suite."""
import json, os, threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from astra_wb.annotate import LabelStore
from astra_wb.labels import LabelError
from astra_wb.eval import RunError, load_run, read_rows
from astra_wb.motion import Motion
from astra_wb.protocol import (Answer, Invoke, Observation, ProtocolError, Sample, Trajectory, Turn, _parse_turn,
                               load_trajectories_jsonl, load_trajectory, render_tool_call, save_trajectories_jsonl,
                               save_trajectory)
from astra_wb.synthqa import export_bench, generate_bench, load_bench

DEEP, HUGE = "[" * 100_000 + "]" * 100_000, "1" + "0" * 5000
NAMED = (ProtocolError, RunError, LabelError)    # the loaders' own errors

def _traj(question="Where is the lamp?"):
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    s = Sample("s1", question, [im], {"A": "left", "B": "right"}, "A", "Positional Relationship (Cam.–Obj.)")
    inv = Invoke(1, Motion("yaw", 90), "look right")
    return Trajectory(s, "agentic", turns=[Turn(render_tool_call(inv), inv, Observation(im, 2, 1, inv.motion, "oracle")),
                                           Turn("<think>seen</think><answer>A</answer>", Answer("A", "seen"))], final_answer="A")

def _named_error(fn, *needles):
    "fn() raises one of the loaders' own errors whose message holds every needle."
    with pytest.raises(NAMED) as e: fn()
    for n in needles: assert n in str(e.value), (n, str(e.value))

def _within(fn, fifo: Path, seconds: float = 10.0):
    "fn() in a daemon thread; fails if it has not returned in time (then unblocks it by opening the FIFO)."
    box = {}
    def run():
        try: fn()
        except BaseException as e: box["error"] = e
    t = threading.Thread(target=run, daemon=True); t.start(); t.join(seconds)
    if t.is_alive():
        try: os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError: pass
        pytest.fail(f"blocked on the FIFO {fifo.name} for {seconds} s")
    return box.get("error")

# ----------------------------------------------------------------------------- 1. planted symlinks
def test_trajectory_json_symlinked_out_of_its_folder(tmp_path):
    outside = save_trajectory(_traj("SECRET question"), tmp_path / "outside")
    folder = save_trajectory(_traj(), tmp_path / "run" / "t")
    (folder / "trajectory.json").unlink(); (folder / "trajectory.json").symlink_to(outside / "trajectory.json")
    _named_error(lambda: load_trajectory(folder), "trajectory.json")

# ----------------------------------------------------------------------------- 3. FIFOs
def test_fifos_are_refused_without_blocking(tmp_path):
    folder = save_trajectory(_traj(), tmp_path / "t")
    (folder / "trajectory.json").unlink(); os.mkfifo(folder / "trajectory.json")
    assert isinstance(_within(lambda: load_trajectory(folder), folder / "trajectory.json"), ProtocolError)
    run = tmp_path / "run"; run.mkdir(); (run / "config.json").write_text("{}"); os.mkfifo(run / "results.jsonl")
    assert isinstance(_within(lambda: load_run(run), run / "results.jsonl"), RunError)
    export_bench(generate_bench(1, seed=0), tmp_path / "b")
    img = next((tmp_path / "b" / "images").rglob("1.png")); img.unlink(); os.mkfifo(img)
    assert isinstance(_within(lambda: load_bench(tmp_path / "b"), img), ProtocolError)
    path = tmp_path / "labels.jsonl"; os.mkfifo(path)
    store = LabelStore(tmp_path / "l.db")
    assert isinstance(_within(lambda: store.import_jsonl(path), path), LabelError)

# ----------------------------------------------------------------------------- 4. hostile JSON, paths, images
@pytest.mark.parametrize("payload,needle", [(DEEP, "nested"), (f'{{"version": {HUGE}}}', "digits"),
                                            (b'{"version": 1, "x": "\xe9"}', "UTF-8")], ids=["deep", "huge-int", "latin-1"])
def test_hostile_json_in_every_loader(tmp_path, payload, needle):
    raw = payload if isinstance(payload, bytes) else payload.encode()
    folder = save_trajectory(_traj(), tmp_path / "t"); (folder / "trajectory.json").write_bytes(raw)
    _named_error(lambda: load_trajectory(folder), "trajectory.json", needle)
    (tmp_path / "t.jsonl").write_bytes(raw + b"\n")
    _named_error(lambda: load_trajectories_jsonl(tmp_path / "t.jsonl"), "t.jsonl:1", needle)
    export_bench(generate_bench(1, seed=0), tmp_path / "b"); (tmp_path / "b" / "bench.jsonl").write_bytes(raw + b"\n")
    _named_error(lambda: load_bench(tmp_path / "b"), "bench.jsonl:1", needle)
    (tmp_path / "results.jsonl").write_bytes(raw + b"\n")
    _named_error(lambda: read_rows(tmp_path / "results.jsonl"), "results.jsonl:1", needle)
    run = tmp_path / "run"; run.mkdir(); (run / "config.json").write_bytes(raw)
    _named_error(lambda: load_run(run), "config.json", needle)
    (tmp_path / "labels.jsonl").write_bytes(raw + b"\n")
    _named_error(lambda: LabelStore(tmp_path / "l.db").import_jsonl(tmp_path / "labels.jsonl"), "labels.jsonl:1", needle)

def test_pathological_paths_and_images(tmp_path):
    folder = save_trajectory(_traj(), tmp_path / "t")
    d = json.loads((folder / "trajectory.json").read_text())
    os.symlink(folder / "loop", folder / "loop")
    os.mkdir(folder / "adir")
    for bad in ["loop", "images/a\x00b.png", "x" * 5000, "adir", "/etc/hostname", "../t/images/given_1.png"]:
        d["sample"]["images"] = [bad]; (folder / "trajectory.json").write_text(json.dumps(d))
        _named_error(lambda: load_trajectory(folder), "sample.images[0]")
    export_bench(generate_bench(1, seed=0), tmp_path / "b")
    depth = next((tmp_path / "b" / "images").rglob("depth_1.png"))
    depth.write_bytes(depth.read_bytes()[:40])                      # a corrupt depth PNG
    _named_error(lambda: load_bench(tmp_path / "b"), "bench.jsonl:1", "depths[0]")

# ----------------------------------------------------------------------------- 5. U+2028 / U+0085 in JSONL
def test_line_separators_inside_json_strings(tmp_path):
    q = "Where is the lamp?\u2028Look\u0085twice."
    path = save_trajectories_jsonl([_traj(q)], tmp_path / "t.jsonl")
    path.write_text(json.dumps(json.loads(path.read_text()), ensure_ascii=False) + "\n", encoding="utf-8")
    assert "\u2028" in path.read_text(encoding="utf-8")
    assert load_trajectories_jsonl(path)[0].sample.question == q
    bench = generate_bench(1, seed=0); bench[0].question = q
    p = export_bench(bench, tmp_path / "b")
    p.write_text("".join(json.dumps(json.loads(l), ensure_ascii=False) + "\n" for l in p.read_text().splitlines()), encoding="utf-8")
    assert load_bench(tmp_path / "b")[0].question == q

# ----------------------------------------------------------------------------- 6. results rows and run configs
@pytest.mark.parametrize("text,needle", [('{"index": 0, "category": "c"}', "'id'"), ('[1, 2]', "JSON object"),
                                         ('{"id": 5, "index": 0}', "'id'")], ids=["no-id", "array", "int-id"])
def test_bad_results_rows(tmp_path, text, needle):
    run = tmp_path / "run"; run.mkdir(); (run / "config.json").write_text("{}")
    (run / "results.jsonl").write_text(text + "\n")
    _named_error(lambda: load_run(run), "results.jsonl:1", needle)

def test_bad_run_config(tmp_path):
    run = tmp_path / "run"; run.mkdir()
    for text, needle in [("{not json", "not valid JSON"), ("[]", "config.json"), ('{"mode": 3}', "'mode'")]:
        (run / "config.json").write_text(text)
        _named_error(lambda: load_run(run), "config.json", needle)

# ----------------------------------------------------------------------------- 7. wrong types
@pytest.mark.parametrize("path,value,field", [(("valid",), "false", "valid"), (("forced_k",), "two", "forced_k"),
                                              (("sample", "options"), ["left", "right"], "options"),
                                              (("sample", "answer"), 1, "answer"),
                                              (("turns", 0, "action", "reference_image"), "1", "reference_image")])
def test_wrong_types_are_errors(tmp_path, path, value, field):
    folder = save_trajectory(_traj(), tmp_path / "t")
    d = json.loads((folder / "trajectory.json").read_text())
    node = d
    for k in path[:-1]: node = node[k]
    node[path[-1]] = value
    (folder / "trajectory.json").write_text(json.dumps(d))
    _named_error(lambda: load_trajectory(folder), "trajectory.json", field)

def test_wrong_types_in_the_synthetic_bench(tmp_path):
    p = export_bench(generate_bench(1, seed=0), tmp_path / "b")
    for key, value in [("answer", 1), ("options", {"A": 1, "B": "x"})]:
        d = json.loads(p.read_text().splitlines()[0]); d[key] = value
        p.write_text(json.dumps(d) + "\n")
        _named_error(lambda: load_bench(tmp_path / "b"), "bench.jsonl:1", key)

# ----------------------------------------------------------------------------- 9. parse_turn's own checks
@pytest.mark.parametrize("value", ["1" + "0" * 400, "9" * 5000, "-" + "9" * 400], ids=["1e400-int", "5000-digits", "negative"])
def test_parse_turn_handles_huge_numbers_on_purpose(value):
    for args in ('{"reference_image": 1, "motion_type": "move_forward", "value": %s}' % value,
                 '{"reference_image": %s, "motion_type": "turn_left", "value": 30}' % value):
        text = '<think>x</think><tool_call>{"name": "world_simulator", "arguments": %s}</tool_call>' % args
        got = _parse_turn(text, 2)                  # the inner parser: no exception for the catch-all to hide
        assert got.reason == "schema_error", got

def test_scan_folder_with_a_corrupt_depth_png_and_a_fifo_pose(tmp_path):
    from astra_wb.scene import load_scan, make_scene, render, sample_cameras, write_scan
    from astra_wb.geometry import intrinsics
    scene, K = make_scene(2), intrinsics(32, 24, 60)
    write_scan([render(scene, P, K, 32, 24) for P in sample_cameras(scene, 2, rng=1)], tmp_path / "scan")
    d = tmp_path / "scan" / "depth" / "1.png"; d.write_bytes(d.read_bytes()[:40])
    with pytest.raises(ValueError, match="1.png"): load_scan(tmp_path / "scan")
    p = tmp_path / "scan" / "pose" / "0.txt"; p.unlink(); os.mkfifo(p)
    err = _within(lambda: load_scan(tmp_path / "scan"), p)
    assert isinstance(err, ValueError) and "0.txt" in str(err)
