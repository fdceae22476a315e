"""Benchmark files from elsewhere: image paths that leave the benchmark folder, FIFOs, hostile JSON and
wrongly typed video records are each one BenchmarkError naming the file, row and field; the CLI turns
them (and the same in label imports and run folders) into one line on stderr, never a traceback."""
import json, os, threading

import pandas as pd
import pytest
from PIL import Image

from astra_wb.benchmarks import BenchmarkError, MMSIBench, MindCube, encode_jpeg, write_mindcube_fixture
from astra_wb.video_bench import MMSIVideoBench, write_video_fixture

@pytest.fixture
def secret(tmp_path):
    p = tmp_path / "outside" / "secret.png"; p.parent.mkdir()
    Image.new("RGB", (7, 5), (255, 0, 0)).save(p); return p

def _mindcube(tmp_path, images):
    jl = write_mindcube_fixture(tmp_path / "mc", n=1)
    row = json.loads(jl.read_text()); row["images"] = images
    jl.write_text(json.dumps(row) + "\n"); return jl

# ----------------------------------------------------------------------------- 2. paths out of the folder
def test_mindcube_images_outside_the_folder(tmp_path, secret):
    for images in ([str(secret)], ["../../outside/secret.png"], ["other_all_image/../../../outside/secret.png"]):
        with pytest.raises(BenchmarkError, match=r"row 0: field 'images\[0\]'"): MindCube(_mindcube(tmp_path, images))[0]
    (tmp_path / "mc" / "link.png").symlink_to(secret)
    with pytest.raises(BenchmarkError, match="leads outside"): MindCube(_mindcube(tmp_path, ["link.png"]))[0]

def test_video_frames_and_ref_images_outside_the_folder(tmp_path, secret):
    path = write_video_fixture(tmp_path / "v", n=1)
    rec = json.loads(path.read_text())
    for key, value, field in [("frames_list", [[str(secret)] * 3, [str(secret)] * 3], "frames_list"),
                              ("frames_list", [["../../outside/secret.png"] * 3] * 2, "frames_list"),
                              ("ref_images", [str(secret)], "ref_images"), ("ref_images", ["../../outside/secret.png"], "ref_images")]:
        bad = json.loads(json.dumps(rec)); bad[0][key] = value
        path.write_text(json.dumps(bad))
        with pytest.raises(BenchmarkError, match=rf"row 0: field '{field}\["): MMSIVideoBench(path)[0]

def test_mmsi_parquet_image_dict_with_an_absolute_path(tmp_path, secret):
    df = pd.DataFrame([{"id": 1, "images": [{"bytes": None, "path": str(secret)}], "question_type": "MSR",
                        "question": "Which?\nOptions: A: x, B: y", "answer": "A", "thought": "t"}])
    (tmp_path / "mmsi").mkdir(); df.to_parquet(tmp_path / "mmsi" / "MMSI_bench.parquet")
    with pytest.raises(BenchmarkError, match=r"row 0: field 'images\[0\]'"): MMSIBench(tmp_path / "mmsi" / "MMSI_bench.parquet")[0]

# ----------------------------------------------------------------------------- 3. FIFOs
def _fails_fast(fn, fifo, seconds=10.0):
    box = {}
    def run():
        try: fn()
        except BaseException as e: box["e"] = e
    t = threading.Thread(target=run, daemon=True); t.start(); t.join(seconds)
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)) if os.path.exists(fifo) else None
        pytest.fail(f"blocked on {fifo}")
    assert isinstance(box.get("e"), BenchmarkError), box

def test_fifo_image_and_fifo_file(tmp_path):
    jl = write_mindcube_fixture(tmp_path / "mc", n=1)
    img = tmp_path / "mc" / json.loads(jl.read_text())["images"][0]
    img.unlink(); os.mkfifo(img)
    _fails_fast(lambda: MindCube(jl)[0], img)
    jl.unlink(); os.mkfifo(jl)
    _fails_fast(lambda: MindCube(jl), jl)
    v = write_video_fixture(tmp_path / "v", n=1); v.unlink(); os.mkfifo(v)
    _fails_fast(lambda: MMSIVideoBench(v), v)

# ----------------------------------------------------------------------------- 4. hostile JSON
@pytest.mark.parametrize("payload,needle", [(b"[" * 50_000, "nested"), (b'{"id": 1' + b"0" * 5000 + b"}", "digits"),
                                            ('{"id": "around_1", "question": "caf\u00e9"}'.encode("latin-1"), "UTF-8")],
                         ids=["deep", "huge-int", "latin-1"])
def test_hostile_json_in_benchmark_files(tmp_path, payload, needle):
    jl = write_mindcube_fixture(tmp_path / "mc", n=1); jl.write_bytes(payload + b"\n")
    with pytest.raises(BenchmarkError, match=needle) as e: MindCube(jl)
    assert jl.name in str(e.value)
    v = write_video_fixture(tmp_path / "v", n=1); v.write_bytes(payload)
    with pytest.raises(BenchmarkError, match=needle) as e: MMSIVideoBench(v)
    assert v.name in str(e.value)

# ----------------------------------------------------------------------------- 6. video records of the wrong shape
@pytest.mark.parametrize("change,field", [(("video_list", 0, "base_fps", "abc"), "base_fps"), (("video_list", 0, "base_fps", 1e400), "base_fps"),
                                          (("video_list", 0, "end", "later"), "end"), (("frames_list", None, None, [5, 6]), "frames_list"),
                                          (("video_list", 0, "path", 7), "path")], ids=["fps-abc", "fps-inf", "end-later", "frames-ints", "path-int"])
def test_video_records_wrong_types(tmp_path, change, field):
    key, k, sub, value = change
    path = write_video_fixture(tmp_path / "v", n=1, with_frames=key == "frames_list")   # clips are decoded when no frames
    rec = json.loads(path.read_text())
    if sub is None: rec[0][key] = value
    else: rec[0][key][k][sub] = value
    path.write_text(json.dumps(rec))
    with pytest.raises(BenchmarkError, match=rf"row 0: field '[^']*{field}"): MMSIVideoBench(path)[0]

@pytest.mark.parametrize("top", ["42", "null", '"text"'])
def test_video_top_level_not_records(tmp_path, top):
    path = write_video_fixture(tmp_path / "v", n=1); path.write_text(top)
    with pytest.raises(BenchmarkError, match="mmsivideo.json"): MMSIVideoBench(path)

# ----------------------------------------------------------------------------- 8. the CLI: one line each
def _one_line(capsys, argv, *needles):
    from astra_wb.cli import main
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (rc, err)
    for n in needles: assert n in err, (n, err)

def test_cli_eval_latin1_mindcube_names_the_file(tmp_path, capsys):
    jl = write_mindcube_fixture(tmp_path / "mc", n=2)
    jl.write_bytes(jl.read_text().replace("sofa", "caf\u00e9").encode("latin-1"))
    _one_line(capsys, ["eval", "--benchmark", "mindcube", "--path", str(jl), "--mode", "direct", "--out", str(tmp_path / "r1")],
              "MindCube_tinybench.jsonl", "UTF-8")

def test_cli_eval_video_json_holding_42(tmp_path, capsys):
    v = write_video_fixture(tmp_path / "v", n=1); v.write_text("42")
    _one_line(capsys, ["eval", "--benchmark", "mmsi-video", "--path", str(v), "--mode", "direct", "--out", str(tmp_path / "r2")],
              "mmsivideo.json")

def test_cli_annotate_import_of_deep_json(tmp_path, capsys):
    deep = tmp_path / "deep.jsonl"; deep.write_text("[" * 100_000 + "\n")
    _one_line(capsys, ["annotate", "import", str(deep), "--db", str(tmp_path / "l.db")], "deep.jsonl")

def test_cli_report_on_a_row_without_id(tmp_path, capsys):
    run = tmp_path / "run"; run.mkdir(); (run / "config.json").write_text("{}")
    (run / "results.jsonl").write_text('{"index": 0, "category": "c", "correct": true, "valid": true, "n_tool_calls": 0, "timings": {}}\n')
    _one_line(capsys, ["report", str(run), "--out", str(tmp_path / "r.html")], "results.jsonl:1", "'id'")
