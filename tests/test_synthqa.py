"""synthqa across modules: flags and answers re-derived from the scene, the oracle simulator, the bench files, the CLI."""
import json
import numpy as np
import pytest
from astra_wb.synthqa import (generate_bench, export_bench, load_bench, verify_sample, query_pose, World, CATEGORY,
                              OBJECT_FAMILIES)
from astra_wb.scene import Scene
from astra_wb.motion import Motion
from astra_wb.protocol import ProtocolError


@pytest.fixture(scope="module")
def bench():
    return generate_bench(60, seed=11)


def test_every_sample_verifies(bench):
    assert [verify_sample(s) for s in bench] == [[]] * len(bench)


def test_mix_balance_and_categories(bench):
    flags = [s.meta["needs_imagination"] for s in bench]
    assert 0.3 <= np.mean(flags) <= 0.7
    letters = [s.answer for s in bench]
    assert {letters.count(k) for k in "ABCD"} == {15}
    assert {s.category for s in bench} == set(CATEGORY.values())
    assert "Positional Relationship (Cam.\u2013Obj.)" in {s.category for s in bench}
    for s in bench:
        assert s.meta["source"] == "synth" and 2 <= len(s.images) <= 4
        assert Scene.from_dict(s.meta["scene"]).to_dict() == s.meta["scene"]


def test_flags_follow_visibility_through_the_oracle(bench):
    """For object questions that need imagination, the oracle's view after the question's motion shows
    the answer object although no given image does; for the others the given query image shows it."""
    from astra_wb.simulators import get_simulator
    oracle = get_simulator("oracle")
    checked = 0
    for s in bench:
        if s.meta["family"] not in OBJECT_FAMILIES: continue
        q, ans = s.meta["query"], s.meta["deciding_objects"][0]["id"]
        w = World(Scene.from_dict(s.meta["scene"]))
        in_given = [w.view(np.asarray(p)).count[ans] for p in s.poses]
        if s.meta["needs_imagination"]:
            obs = oracle.imagine(s, [], q["reference_image"], Motion(*q["motion"]))
            np.testing.assert_allclose(obs.pose, query_pose(s), atol=1e-9)
            assert np.array_equal(np.asarray(obs.image), w.view(query_pose(s)).frame.rgb)
            assert max(in_given) <= 10 and w.view(obs.pose).count[ans] >= 120
        else:
            assert in_given[q["image"] - 1] >= 120
        checked += 1
    assert checked >= 20


def test_verify_catches_corruption(bench):
    s = next(x for x in bench if x.meta["family"] == "motion")
    gold = s.answer
    s.answer = next(k for k in "ABCD" if k != gold)
    try: assert verify_sample(s)
    finally: s.answer = gold
    s2 = next(x for x in bench if x.meta["family"] == "cam_obj" and x.meta["needs_imagination"])
    s2.meta["needs_imagination"] = False
    try: assert any("needs_imagination" in p for p in verify_sample(s2))
    finally: s2.meta["needs_imagination"] = True


def test_reproducible_and_seed_sensitive():
    a, b, c = generate_bench(8, seed=4), generate_bench(8, seed=4), generate_bench(8, seed=5)
    assert [(s.question, s.options, s.answer) for s in a] == [(s.question, s.options, s.answer) for s in b]
    assert all(np.array_equal(np.asarray(x.images[0]), np.asarray(y.images[0])) for x, y in zip(a, b))
    assert [s.question for s in a] != [s.question for s in c]


def test_files_roundtrip_and_synth_benchmark(bench, tmp_path):
    export_bench(bench[:6], tmp_path / "synth")
    back = load_bench(tmp_path / "synth")
    assert [(s.id, s.options, s.answer, s.meta) for s in back] == [(s.id, s.options, s.answer, s.meta) for s in bench[:6]]
    assert all(verify_sample(s) == [] for s in back)
    from astra_wb.benchmarks import get_benchmark
    b = get_benchmark("synth", tmp_path / "synth")
    got = list(b) if hasattr(b, "__iter__") else [b[i] for i in range(len(b))]
    assert [s.id for s in got] == [s.id for s in bench[:6]]


def test_bad_files_are_named(tmp_path):
    export_bench(generate_bench(2, seed=1), tmp_path)
    lines = (tmp_path / "bench.jsonl").read_text().splitlines()
    d = json.loads(lines[1]); d["options"] = ["A", "B"]
    (tmp_path / "bench.jsonl").write_text(lines[0] + "\n" + json.dumps(d) + "\n")
    with pytest.raises(ProtocolError, match=r"bench.jsonl:2: field 'options'"): load_bench(tmp_path)
    (tmp_path / "bench.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(ProtocolError, match=r"bench.jsonl:2: not valid JSON"): load_bench(tmp_path)
    d = json.loads(lines[0]); d["images"][0] = "images/nope.png"
    (tmp_path / "bench.jsonl").write_text(json.dumps(d) + "\n")
    with pytest.raises(ProtocolError, match=r"bench.jsonl:1: field images\[0\]: missing file"): load_bench(tmp_path)


def test_cli_make_synth(tmp_path, capsys):
    from astra_wb.cli import main
    assert main(["make-synth", "--n", "5", "--seed", "2", "--out", str(tmp_path / "s")]) == 0
    assert "wrote 5 questions" in capsys.readouterr().out
    assert len(load_bench(tmp_path / "s")) == 5
    with pytest.raises(SystemExit): main(["make-synth", "--n", "0", "--out", str(tmp_path / "t")])


def test_camera_move_questions_agree_in_number():
    qs = [s.question for s in generate_bench(120, seed=3) if "moved 1 meter" in s.question]
    assert qs and all("moved 1 meter in one direction" in q for q in qs), qs[:3]


def test_cli_make_synth_out_is_a_file(tmp_path, capsys):
    from astra_wb.cli import main
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(SystemExit) as e: main(["make-synth", "--n", "2", "--out", str(tmp_path / "f.png")])
    assert e.value.code == 2 and "exists and is not a folder" in capsys.readouterr().err
