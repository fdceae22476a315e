"""Benchmark loaders on fixture files written in each exact published format (real encoded images)."""
import base64, json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from astra_wb.video_bench import MMSIVideoBench, write_video_fixture, write_video, sample_frame_indices, extract_mmsi_video
from astra_wb.benchmarks import (MMSIBench, MindCube, BenchmarkError, MMSI_CATEGORIES, MMSI_GROUPS,
                                 encode_jpeg, extract_mmsi, extract_mindcube, get_benchmark, split_options,
                                 write_mindcube_fixture, write_mmsi_fixture)


def test_mmsi_parquet_and_tsv_agree(tmp_path):
    pq = MMSIBench(write_mmsi_fixture(tmp_path / "pq", n=11))
    tsv = MMSIBench(write_mmsi_fixture(tmp_path / "tsv", n=11, form="tsv"))
    assert len(pq) == len(tsv) == 11
    for a, b in zip(pq, tsv):
        assert (a.id, a.question, a.options, a.answer, a.category) == (b.id, b.question, b.options, b.answer, b.category)
        assert np.abs(np.asarray(a.images[0], float) - np.asarray(b.images[0], float)).mean() < 1e-6
    assert [s.category for s in pq] == list(MMSI_CATEGORIES)
    assert {s.meta["group"] for s in pq} == set(MMSI_GROUPS)


def test_mmsi_hf_image_dicts_and_real_jpeg_content(tmp_path):
    img = Image.new("RGB", (40, 30), (10, 200, 30))
    df = pd.DataFrame([{"id": 7, "images": [{"bytes": encode_jpeg(img), "path": None}], "question_type": "MSR",
                        "question": "Which?\nOptions: A: x, B: y", "answer": "B", "thought": "t"}])
    df.to_parquet(tmp_path / "m.parquet")
    s = MMSIBench(tmp_path / "m.parquet")[0]
    assert s.images[0].size == (40, 30) and abs(np.asarray(s.images[0])[..., 1].mean() - 200) < 3
    assert s.meta["thought"] == "t" and s.options == {"A": "x", "B": "y"}


@pytest.mark.parametrize("field, value, expect", [
    ("answer", "E", "field 'answer'"),
    ("question_type", "Positional Relationship (Cam.-Foo.)", "field 'question_type'"),
    ("question", "no options here", "field 'question'"),
])
def test_mmsi_bad_field_is_named(tmp_path, field, value, expect):
    path = write_mmsi_fixture(tmp_path, n=4)
    df = pd.read_parquet(path); df.loc[3, field] = value; df.to_parquet(path)
    with pytest.raises(BenchmarkError, match=rf"MMSI_bench.parquet: row 3: {expect}"):
        b = MMSIBench(path); b[3]


def test_mmsi_tsv_bad_base64_and_missing_column(tmp_path):
    path = write_mmsi_fixture(tmp_path, n=3, form="tsv")
    df = pd.read_csv(path, sep="\t", dtype=str); df.loc[1, "image"] = json.dumps(["@@notbase64@@"]); df.to_csv(path, sep="\t", index=False)
    with pytest.raises(BenchmarkError, match=r"row 1: field 'image\[0\]'"):
        MMSIBench(path)[1]
    df.drop(columns=["category"]).to_csv(path, sep="\t", index=False)
    with pytest.raises(BenchmarkError, match="field 'category': missing column"):
        MMSIBench(path)


def test_filters(tmp_path):
    path = write_mmsi_fixture(tmp_path, n=22)
    assert len(MMSIBench(path, categories="PR")) == 12
    assert len(MMSIBench(path, categories=["MSR", "Attr."])) == 6
    assert MMSIBench(path, ids=["5", "1", "999"]).ids == ["1", "5"]
    assert MMSIBench(path, categories="PR", limit=2).ids == ["0", "1"]
    assert len(get_benchmark("mmsi", tmp_path, limit=3)) == 3


def test_mindcube_settings_images_and_errors(tmp_path):
    jl = write_mindcube_fixture(tmp_path / "mc", n=8)
    b = MindCube(jl)
    assert [s.category for s in b] == ["rotation", "around", "among", "translation"] * 2
    s = b[0]
    assert s.images[0].size == (20, 16) and s.options == {"A": "a sofa", "B": "a table", "C": "a lamp"}
    lines = jl.read_text().splitlines()
    jl.write_text("\n".join(lines[:2] + ['{"id": "around_x", "question": "Q? A. a B. b"'] + lines[3:]) + "\n")
    with pytest.raises(BenchmarkError, match=r"MindCube_tinybench.jsonl: row 2: not valid JSON"):
        MindCube(jl)
    rec = json.loads(lines[1]); rec["images"] = ["other_all_image/nowhere.jpg"]
    jl.write_text("\n".join([lines[0], json.dumps(rec)]) + "\n")
    with pytest.raises(BenchmarkError, match=r"row 1: field 'images\[0\]': missing image file .*nowhere.jpg"):
        MindCube(jl, image_root=tmp_path / "mc")[1]


def test_video_frames_sampling_settings(tmp_path):
    path = write_video_fixture(tmp_path / "v", n=4)
    sc = MMSIVideoBench(path, setting="Sufficient-Coverage")[0]
    u50 = MMSIVideoBench(path, setting="Uniform-50")[0]
    assert sc.meta["n_frames"] == [5, 13] and u50.meta["n_frames"] == [5, 13]   # 18 base-rate frames fit both budgets
    assert len(sc.images) == 5 + 13 + 1 and sc.answer == "A" and sc.meta["group"] == "Spatial Construction"
    assert MMSIVideoBench(path)[3].meta["group"] == "Planning"
    assert MMSIVideoBench(path)[1].meta["sub_benchmarks"] == ["(Easy2hard)Avg", "(Easy2hard)level_2", "(Robot)Avg", "(Robot)Navigation"]


def test_video_more_frames_than_the_budget(tmp_path):
    path = write_video_fixture(tmp_path / "v", n=1)
    rec = json.loads(path.read_text())
    rec[0]["frames_list"] = [rec[0]["frames_list"][0] * 10, rec[0]["frames_list"][1] * 10]   # 50 + 130 frame paths
    path.write_text(json.dumps(rec))
    assert MMSIVideoBench(path, setting="Uniform-50")[0].meta["n_frames"] == [14, 36]
    assert MMSIVideoBench(path, setting="Sufficient-Coverage")[0].meta["n_frames"] == [50, 130]


def test_video_decoded_when_only_videos(tmp_path):
    path = write_video_fixture(tmp_path / "v", n=1, with_frames=False)
    s = MMSIVideoBench(path, setting="Uniform-50")[0]
    assert s.meta["n_frames"] == [5, 13] and all(im.size == (32, 24) for im in s.images[:18]) and s.images[18].size == (16, 16)
    (tmp_path / "v/videos/0_1.mp4").unlink()
    with pytest.raises(BenchmarkError, match=r"row 0: field 'video_list\[1\].path': missing video file"):
        MMSIVideoBench(path)[0]


def test_frame_sampling_properties():
    rng = np.random.default_rng(0)
    for _ in range(300):
        counts = rng.integers(1, 400, int(rng.integers(1, 6))).tolist(); k = int(rng.choice([50, 300]))
        picks = sample_frame_indices(counts, k)
        assert all(0 <= i < n for idx, n in zip(picks, counts) for i in idx) and all(picks)
        assert all(idx == sorted(set(idx)) for idx in picks)
        if sum(counts) <= k: assert [len(p) for p in picks] == counts
        else: assert k <= sum(map(len, picks)) <= k + len(counts)


def test_official_extraction_examples():
    assert extract_mmsi("The answer is ``B``") == "B"
    assert extract_mmsi("A cat sits; so C") == "C"
    assert extract_mmsi("``E``") is None
    assert extract_mindcube("Looking again, C. a lamp") == "C"
    assert extract_mindcube("<Answer> my answer is B") == "B"
    assert split_options("Q?\nOptions: A. 1.5 m, B. 2 m, C. 3 m")[1] == {"A": "1.5 m", "B": "2 m", "C": "3 m"}
    assert [extract_mmsi_video(t) for t in ("The answer is B.", "\\boxed{C}", "D", "maybe (A)")] == ["B", "C", "D", None]


def test_video_seeking_matches_sequential_decoding(tmp_path):
    import av
    from astra_wb.video_bench import decode_video_frames
    path = tmp_path / "long.mp4"
    with av.open(str(path), "w") as c:                       # 60 frames at 4 fps, a keyframe every 4 frames
        s = c.add_stream("libx264", rate=4); s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"; s.options = {"g": "4"}
        for i in range(60):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((16, 32, 3), 4 * i, np.uint8), format="rgb24")): c.mux(p)
        for p in s.encode(): c.mux(p)
    times = [0.0, 0.25, 3.1, 7.0, 7.4, 12.6, 14.75]
    seq = decode_video_frames(path, times, seek_gap=1e9)
    seek = decode_video_frames(path, times, seek_gap=0.5)
    means = [np.asarray(im, float).mean() for im in seek]
    assert [np.asarray(a).tobytes() for a in seq] == [np.asarray(b).tobytes() for b in seek]
    assert all(abs(m - 16 * t) < 6 for m, t in zip(means, times)), means


def test_import_stays_light():
    import subprocess, sys
    code = ("import sys, astra_wb.benchmarks, astra_wb.eval, astra_wb.report; "
            "print([m for m in ('torch', 'transformers', 'gradio', 'av', 'plotly', 'pandas') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_mmsi_parquet_row_groups_read_lazily(tmp_path):
    import pyarrow as pa, pyarrow.parquet as pq
    rows = [{"id": i, "images": [encode_jpeg(Image.new("RGB", (8, 8), (20 * i, 0, 0)))], "question_type": "MSR",
             "question": "Q?\nOptions: A: x, B: y", "answer": "A", "thought": ""} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet", row_group_size=3)
    b = MMSIBench(tmp_path / "m.parquet")
    assert b.pf.num_row_groups == 4
    for i in (9, 0, 4, 5, 3, 8):
        assert abs(np.asarray(b[i].images[0])[..., 0].mean() - 20 * i) < 4


def test_mmsi_unknown_question_type_message_is_plain(tmp_path):
    path = write_mmsi_fixture(tmp_path, n=3)
    df = pd.read_parquet(path); df.loc[2, "question_type"] = "Bogus"; df.to_parquet(path)
    with pytest.raises(BenchmarkError) as e: MMSIBench(path)[2]
    msg = str(e.value)
    assert "row 2: field 'question_type': unknown MMSI-Bench question type 'Bogus'" in msg
    assert not msg.split(": ", 3)[-1].startswith('"'), msg   # not the repr of a KeyError
