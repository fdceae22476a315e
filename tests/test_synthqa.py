"""synthqa across modules: families and answers re-derived by a second route, what the oracle and reproject show of the
query view, the recorded evidence, the bench files, the CLI."""
import json
import numpy as np
import pytest
from astra_wb.synthqa import (generate_bench, export_bench, load_bench, verify_sample, query_pose, World, CATEGORY,
                              OBJECT_FAMILIES, FAMILIES, UNSTATED)
from astra_wb.scene import Scene
from astra_wb.motion import Motion
from astra_wb.protocol import ProtocolError


@pytest.fixture(scope="module")
def bench():
    return generate_bench(60, seed=11)


def test_every_sample_verifies(bench):
    assert [verify_sample(s) for s in bench] == [[]] * len(bench)


def test_mix_balance_and_categories(bench):
    fams = [s.meta["family"] for s in bench]
    assert set(fams) == set(FAMILIES) and fams.count("hidden") < fams.count("perspective") < fams.count("direct")
    assert all(s.meta["needs_imagination"] == (s.meta["family"] != "direct") for s in bench)
    letters = [s.answer for s in bench]
    assert {letters.count(k) for k in "ABCD"} == {15}
    assert {s.category for s in bench} == set(CATEGORY.values())
    for s in bench:
        assert s.meta["source"] == "synth" and 2 <= len(s.images) <= 4
        assert Scene.from_dict(s.meta["scene"]).to_dict() == s.meta["scene"]


def test_some_questions_leave_the_motion_to_the_policy(bench):
    unstated = [s for s in bench if not s.meta["query"]["stated"]]
    assert len(unstated) >= 3 and any(s.meta["query"]["stated"] and s.meta["query"]["motion"] for s in bench)
    for s in unstated:
        assert "Standing at the viewpoint of image" in s.question and "If you" not in s.question
        if s.meta["kind"] == "cam_obj": assert s.meta["query"]["motion"][0] == "yaw" and s.meta["query"]["motion"][1] in UNSTATED


def test_evidence_names_the_given_views_that_show_each_object(bench):
    for s in bench:
        w = World(Scene.from_dict(s.meta["scene"]))
        given = [w.view(np.asarray(p)) for p in s.poses]
        assert s.meta["evidence"], s.id
        for e in s.meta["evidence"]:
            assert e["views"] == [k for k, g in enumerate(given, 1) if g.seen(e["id"])], (s.id, e)
        if s.meta["family"] == "perspective": assert all(e["views"] for e in s.meta["evidence"]), s.id
        if s.meta["family"] == "hidden": assert s.meta["evidence"][0]["views"] == [], s.id


def test_families_through_the_simulators(bench):
    """Hidden: the oracle's query view shows the answer object, no given image does, and reproject (the given RGB-D
    only) cannot. Perspective: reproject's query view, built from the given views alone, shows the answer object.
    Direct: the given query image shows it."""
    from astra_wb.simulators import get_simulator
    from astra_wb.perception import detect
    oracle, rep = get_simulator("oracle"), get_simulator("reproject")
    checked = {f: 0 for f in FAMILIES}
    for s in bench:
        if s.meta["kind"] not in OBJECT_FAMILIES: continue
        q, ans = s.meta["query"], s.meta["deciding_objects"][0]
        w = World(Scene.from_dict(s.meta["scene"]))
        in_given = [w.view(np.asarray(p)).count[ans["id"]] for p in s.poses]
        if s.meta["family"] == "direct":
            assert in_given[q["image"] - 1] >= 120
        else:
            m = Motion(*q["motion"])
            obs = oracle.imagine(s, [], q["reference_image"], m)
            np.testing.assert_allclose(obs.pose, query_pose(s), atol=1e-9)
            assert np.array_equal(np.asarray(obs.image), np.asarray(w.image(query_pose(s))))
            seen_rep = ans["category"] in detect(rep.imagine(s, [], q["reference_image"], m).image)
            if s.meta["family"] == "hidden": assert max(in_given) <= 10 and not seen_rep, s.id
            else: assert max(in_given) >= 120 and seen_rep, s.id
        checked[s.meta["family"]] += 1
    assert min(checked.values()) >= 4, checked


def test_verify_catches_corruption(bench):
    s = next(x for x in bench if x.meta["kind"] == "motion")
    gold = s.answer
    s.answer = next(k for k in "ABCD" if k != gold)
    try: assert verify_sample(s)
    finally: s.answer = gold
    for fam in ("perspective", "hidden"):
        s2 = next(x for x in bench if x.meta["kind"] == "cam_obj" and x.meta["family"] == fam)
        s2.meta["family"] = "direct" if fam == "hidden" else "hidden"
        try: assert any("family" in p for p in verify_sample(s2))
        finally: s2.meta["family"] = fam


def test_the_second_route_uses_the_given_depth(bench):
    "Corrupting the given depth maps (the input) breaks the perspective family's re-derivation, not the answer's."
    s = next(x for x in bench if x.meta["family"] == "perspective" and x.meta["kind"] in OBJECT_FAMILIES)
    depths = s.depths
    s.depths = [np.asarray(d) * 0 + 0.5 for d in depths]
    try: assert [p for p in verify_sample(s) if "family" in p], s.id
    finally: s.depths = depths
    assert verify_sample(s) == []


def test_reproducible_and_seed_sensitive():
    a, b, c = generate_bench(8, seed=4), generate_bench(8, seed=4), generate_bench(8, seed=5)
    assert [(s.question, s.options, s.answer) for s in a] == [(s.question, s.options, s.answer) for s in b]
    assert all(np.array_equal(np.asarray(x.images[0]), np.asarray(y.images[0])) for x, y in zip(a, b))
    assert [s.question for s in a] != [s.question for s in c]


def test_generation_splits_across_workers():
    "Each question has its own seed: two forked workers build the same bench, and question k does not depend on n."
    a, b = generate_bench(6, seed=7), generate_bench(6, seed=7, workers=2)
    assert [(s.question, s.options, s.answer) for s in a] == [(s.question, s.options, s.answer) for s in b]
    assert all(np.array_equal(np.asarray(x.images[0]), np.asarray(y.images[0])) for x, y in zip(a, b))
    assert [s.question for s in generate_bench(3, seed=7)] == [s.question for s in a[:3]]


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
