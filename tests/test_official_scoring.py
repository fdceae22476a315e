"""The official score, row for row: files in each published format (written here), realistic replies from the golden
corpus, scored by the workbench and by the official rules (the corpus's hand-derived answers) side by side."""
import argparse, json, os, signal, socket, subprocess, sys, time, urllib.request
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from golden_outputs import GOLDEN
from astra_wb.benchmarks import MMSIBench, MindCube, extract_mindcube, extract_mmsi, write_mindcube_fixture, write_mmsi_fixture
from astra_wb.eval import EvalConfig, run_eval
from astra_wb.protocol import Trajectory, Turn, parse_turn, build_messages
from astra_wb.video_bench import MMSIVideoBench, extract_mmsi_video, write_video_fixture

EXTRACTORS = {"mmsi": (extract_mmsi, 1), "mindcube": (extract_mindcube, 2), "mmsi-video": (extract_mmsi_video, 3)}


@pytest.mark.parametrize("bench", list(EXTRACTORS))
def test_golden_corpus_official_answers(bench):
    extract, k = EXTRACTORS[bench]
    assert len(GOLDEN) >= 100
    wrong = [(g[0], g[k], extract(g[0])) for g in GOLDEN if extract(g[0]) != g[k]]
    assert not wrong, f"{len(wrong)}/{len(GOLDEN)} disagree: {wrong[:5]}"


def test_golden_corpus_covers_the_hard_cases():
    texts = [g[0] for g in GOLDEN]
    for needle in ("\\boxed{", "``", "the answer is", "answer: b", "<answer>", "<think>"):
        assert any(needle in t.lower() for t in texts), needle
    assert any(g[1] != g[2] for g in GOLDEN) and any(g[2] != g[3] for g in GOLDEN)   # the benchmarks read replies differently
    assert sum(g[1] is None for g in GOLDEN) >= 10


def replay(replies: dict):
    "A rollout that answers each sample with a fixed raw reply (parsed as the agent loop would)."
    def rollout(samples, policy, simulator, config):
        out = []
        for s in samples:
            text = replies[s.id]
            action = parse_turn(text, len(s.images))
            final = getattr(action, "answer", None)
            out.append(Trajectory(sample=s, mode=config.mode, turns=[Turn(text, action)], final_answer=final,
                                  valid=final is not None, timings={"total": 0.0}))
        return out
    return rollout


def _acc(pairs):
    return {k: sum(v) / len(v) for k, v in pairs.items()}


@pytest.mark.parametrize("form", ["parquet", "tsv", "vlmevalkit"])
def test_mmsi_official_score_row_for_row(tmp_path, form):
    n = len(GOLDEN)
    bench = MMSIBench(write_mmsi_fixture(tmp_path / "b", n=n, form=form))
    replies = {s: GOLDEN[i][0] for i, s in enumerate(bench.ids)}
    res = run_eval(EvalConfig(benchmark="mmsi", mode="direct", save_trajectories=False), tmp_path / "run", benchmark=bench,
                   policy=object(), rollout_fn=replay(replies))
    # the official rule: README's extraction on the raw reply, then gold.lower() == extracted[0].lower()
    expect = [GOLDEN[i][1] is not None and GOLDEN[i][1] == "ABCD"[i % 4] for i in range(n)]
    got = [r["correct"] for r in res.rows]
    assert sum(a == b for a, b in zip(got, expect)) == n
    per_cat = defaultdict(list)
    for r, e in zip(res.rows, expect): per_cat[r["category"]].append(e)
    assert {k: v["accuracy"] for k, v in res.metrics["per_category"].items()} == _acc(per_cat)
    assert res.metrics["accuracy"] == sum(expect) / n
    # the protocol score reads only <answer> payloads: a different, separately named number
    tagged = [i for i, (t, *_ ) in enumerate(GOLDEN) if "<answer>" in t]
    assert res.metrics["protocol"]["accuracy"] == sum(res.rows[i]["protocol_correct"] for i in tagged) / n
    assert res.metrics["protocol"]["accuracy"] != res.metrics["accuracy"]


def test_mindcube_official_score_row_for_row(tmp_path):
    n = len(GOLDEN)
    jl = write_mindcube_fixture(tmp_path / "mc", n=n)
    lines = [json.loads(l) for l in jl.read_text().splitlines()]
    lines[5]["gt_answer"] = ""                     # skipped by the official evaluator
    lines[6]["gt_answer"] = None                   # ... and so is a missing one
    jl.write_text("".join(json.dumps(l) + "\n" for l in lines))
    bench = MindCube(jl)
    replies = {s: GOLDEN[i][0] for i, s in enumerate(bench.ids)}
    res = run_eval(EvalConfig(benchmark="mindcube", mode="direct", save_trajectories=False), tmp_path / "run",
                   benchmark=bench, policy=object(), rollout_fn=replay(replies))
    per_setting, overall, verdicts = defaultdict(list), [], []
    for i, l in enumerate(lines):                  # BasicEvaluator.evaluate: skip empty gold, exact comparison
        if not l["gt_answer"]: verdicts.append(None); continue
        ok = GOLDEN[i][2] is not None and GOLDEN[i][2] == l["gt_answer"]
        setting = l["id"].split("_")[0]
        per_setting[setting].append(ok); verdicts.append(ok)
        if setting != "translation": overall.append(ok)
    assert [r["correct"] if r["scored"] else None for r in res.rows] == verdicts
    assert {k: v["accuracy"] for k, v in res.metrics["per_category"].items()} == _acc(per_setting)
    assert res.metrics["accuracy"] == sum(overall) / len(overall) and res.metrics["n_scored"] == len(overall)


def test_mindcube_gold_compared_case_exactly(tmp_path):
    jl = write_mindcube_fixture(tmp_path / "mc", n=3)
    lines = [json.loads(l) for l in jl.read_text().splitlines()]
    lines[1]["gt_answer"] = "b"                    # the loader reads it as B; the official evaluator never matches it
    jl.write_text("".join(json.dumps(l) + "\n" for l in lines))
    bench = MindCube(jl)
    res = run_eval(EvalConfig(benchmark="mindcube", mode="direct", save_trajectories=False), tmp_path / "run",
                   benchmark=bench, policy=object(), rollout_fn=replay({i: "<think>x</think><answer>B</answer>" for i in bench.ids}))
    assert [r["correct"] for r in res.rows] == [False, False, False] and res.rows[1]["protocol_correct"] is True


def _video_root(tmp_path, n):
    "A data root in the published layout with `n` questions (media shared by four base records) and meta_data id lists."
    path = write_video_fixture(tmp_path / "v", n=4, meta_data=False)
    base = json.loads(path.read_text())
    recs = [dict(base[i % 4], id=f"question_{i:04d}", ground_truth="ABCD"[i % 4]) for i in range(n)]
    path.write_text(json.dumps(recs))
    lists = {"robot_bench": {"Navigation": [], "Manipulation": []}, "easy2hard_bench": {"level_1": [], "level_2": [], "level_3": []},
             "ground_bench": {"Target Grounding": []}}
    for i in range(n):
        q = f"question_{i:04d}"
        lists["robot_bench"]["Navigation" if i % 3 == 0 else "Manipulation"].append(q)
        lists["easy2hard_bench"][f"level_{1 + i % 3}"].append(q)
        if i % 5 == 0: lists["ground_bench"]["Target Grounding"].append(q)
    lists["robot_bench"]["Manipulation"].append("question_0000")   # listed twice: the later sub-category wins
    (path.parent / "meta_data").mkdir()
    for stem, d in lists.items(): (path.parent / "meta_data" / f"{stem}.json").write_text(json.dumps(d))
    return path, lists


def test_video_native_layout_and_sub_benchmarks_row_for_row(tmp_path):
    n = len(GOLDEN)
    path, lists = _video_root(tmp_path, n)
    bench = MMSIVideoBench(path)
    replies = {s: GOLDEN[i][0] for i, s in enumerate(bench.ids)}
    res = run_eval(EvalConfig(benchmark="mmsi-video", mode="direct", save_trajectories=False), tmp_path / "run",
                   benchmark=bench, policy=object(), rollout_fn=replay(replies))
    ok = {f"question_{i:04d}": GOLDEN[i][3] is not None and GOLDEN[i][3] == "ABCD"[i % 4] for i in range(n)}
    assert [r["correct"] for r in res.rows] == list(ok.values())
    names = {"robot_bench": "Robot", "easy2hard_bench": "Easy2hard", "ground_bench": "Grounding"}
    expect = {}
    for stem, d in lists.items():                  # evaluation.py --bench: id -> last sub-category, only listed ids
        tag = {q: sub for sub, ids in d.items() for q in ids}
        expect[f"({names[stem]})Avg"] = sum(ok[q] for q in tag) / len(tag)
        for sub in d:
            members = [q for q, s in tag.items() if s == sub]
            if members: expect[f"({names[stem]}){sub}"] = sum(ok[q] for q in members) / len(members)
    got = {k: v["accuracy"] for k, v in res.metrics["sub_benchmarks"].items()}
    assert got == expect
    assert res.metrics["sub_benchmarks"]["(Robot)Avg"]["n"] == n and res.metrics["sub_benchmarks"]["(Grounding)Avg"]["n"] == 24


def test_video_prompt_is_the_native_interleaving(tmp_path):
    path, _ = _video_root(tmp_path, 4)
    s = MMSIVideoBench(path, prompt_style="official")[0]
    rec = json.loads(path.read_text())[0]
    msgs = build_messages(Trajectory(sample=s, mode="direct"))
    assert [m["role"] for m in msgs] == ["user"]
    parts = msgs[0]["content"]
    # official: system_prompt + "\n" + task_prompt + user_prompt + format_prompt, frames where <video> stands
    kinds = "".join("T" if p["type"] == "text" else "I" for p in parts)
    assert kinds == "T" + "I" * 5 + "I" * 13 + "T" + "I" + "T"
    assert parts[0]["text"] == rec["system_prompt"] + "\n" + rec["task_prompt"]
    assert parts[-1]["text"].endswith("D. behind" + rec["format_prompt"])
    both = build_messages(Trajectory(sample=MMSIVideoBench(path)[0], mode="agentic"))
    assert both[0]["role"] == "system" and both[1]["content"][1] == {"type": "text", "text": "Image 1:"}


def test_video_layout_differs_only_in_frame_sampling(tmp_path):
    path, _ = _video_root(tmp_path, 4)
    recs = json.loads(path.read_text())
    r = recs[0]; first, second = r["frames_list"]
    r["frames_list"] = [first * 20, second[:1], first * 20]         # 100 + 1 + 100 frames, 50 kept
    r["video_list"] = [r["video_list"][0], r["video_list"][1], r["video_list"][0]]
    r["user_prompt"] = "<video>" + r["user_prompt"]
    path.write_text(json.dumps(recs))
    native, vk = MMSIVideoBench(path)[0], MMSIVideoBench(path, layout="vlmevalkit")[0]
    assert native.meta["n_frames"] == [25, 1, 25] and vk.meta["n_frames"] == [25, 0, 25]   # no position falls in the middle clip
    assert {"video": list(range(25))} in native.meta["content"] and {"image": 0} in vk.meta["content"]


def test_mmsi_vlmevalkit_prompt_and_errors(tmp_path):
    path = write_mmsi_fixture(tmp_path, n=3, form="vlmevalkit")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    assert df["category"].tolist() == ["Pos-Cam-Obj", "Pos-Cam-Reg", "Pos-Cam-Cam"] and df["image"][0].startswith("['")
    s = MMSIBench(path, prompt_style="official")[2]
    assert s.meta["prompt"] == ("Question 2: where is the chair?\nOptions: A: left, B: right, C: behind, D: front, \n"
                                "Answer with the option's letter from the given choices directly. Enclose the option's letter within ``.")
    msgs = build_messages(Trajectory(sample=s, mode="direct"))
    assert [p["type"] for p in msgs[0]["content"]] == ["image", "image", "text"]
    df.loc[1, "image"] = "['abc', __import__('os').getcwd()]"
    df.to_csv(path, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"MMSIBench_wo_circular.tsv: row 1: field 'image': not a list"):
        MMSIBench(path)[1]


def test_mindcube_prompt_settings_by_name(tmp_path):
    jl = write_mindcube_fixture(tmp_path / "mc", n=2)
    rec = json.loads(jl.read_text().splitlines()[0])
    sample = MindCube(jl, prompt_style="official")[0]
    raw = sample.meta["prompt"]
    parts = build_messages(Trajectory(sample=sample, mode="direct"))[0]["content"]   # the official engines' order:
    assert [p.get("image") for p in parts[:2]] == [sample.images[1], sample.images[0]] and parts[2]["text"] == raw   # last image first
    assert raw.startswith("[Task]\nYour task is to analyze the spatial arrangement") and raw.endswith("\n\n[Question]\n" + rec["question"])
    lines = [dict(json.loads(l), plain_cogmap_gen_instruction="Objects: sofa, lamp.") for l in jl.read_text().splitlines()]
    jl.write_text("".join(json.dumps(l) + "\n" for l in lines))
    cg = MindCube(jl, prompt_setting="plain_cgmap_out")[0].meta["prompt"]
    assert cg.startswith("Objects: sofa, lamp.\n[Answer Instruction]") and "<cogmap>" in cg
    with pytest.raises(ValueError, match="prompt_setting must be one of"):
        MindCube(jl, prompt_setting="cogmap")


def test_bad_meta_data_names_the_file(tmp_path):
    path, _ = _video_root(tmp_path, 4)
    (path.parent / "meta_data/robot_bench.json").write_text('{"Navigation": "question_0000"}')
    with pytest.raises(ValueError, match=r"robot_bench.json: field 'Navigation': expected a list of question ids"):
        MMSIVideoBench(path)


def test_video_vlmevalkit_tsv_loads_and_scores_like_the_native_layout(tmp_path):
    from astra_wb.video_bench import write_video_tsv
    path, _ = _video_root(tmp_path, 12)
    recs = json.loads(path.read_text())
    for i, r in enumerate(recs): r["Robot"] = "Navigation" if i % 3 == 0 else "Manipulation"
    path.write_text(json.dumps(recs))
    tsv = write_video_tsv(path)
    df = pd.read_csv(tsv, sep="\t", dtype=str)
    assert df["image_path"][0].startswith("[['frames/") and df["task_type"][1] == "Motion Understanding"
    replies = {f"question_{i:04d}": GOLDEN[i][0] for i in range(12)}
    res = run_eval(EvalConfig(benchmark="mmsi-video", mode="direct", save_trajectories=False), tmp_path / "run",
                   benchmark=MMSIVideoBench(tsv), policy=object(), rollout_fn=replay(replies))
    native = run_eval(EvalConfig(benchmark="mmsi-video", mode="direct", save_trajectories=False), tmp_path / "run2",
                      benchmark=MMSIVideoBench(path), policy=object(),
                      rollout_fn=replay(replies))
    assert not any(r["error"] for r in res.rows) and [r["correct"] for r in res.rows] == [r["correct"] for r in native.rows]
    assert res.metrics["per_category"] == native.metrics["per_category"]
    assert res.metrics["sub_benchmarks"]["(Robot)Avg"] == native.metrics["sub_benchmarks"]["(Robot)Avg"]
    df.loc[3, "image_path"] = "[[open('x')]]"
    df.to_csv(tsv, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"MMSIVideoBench.tsv: row 3: field 'image_path': not a Python list of paths"):
        MMSIVideoBench(tsv)


def _cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "astra_wb.cli", *map(str, args)], capture_output=True, text=True, env=env)


def test_cli_scores_both_ways_and_rejects_bad_options_in_one_line(tmp_path):
    path = write_mmsi_fixture(tmp_path / "m", n=4, form="vlmevalkit")
    script = tmp_path / "turns.json"; script.write_text(json.dumps(["<think>Option A is tempting, but C.</think><answer>B</answer>"]))
    out = tmp_path / "run"
    r = _cli("eval", "--benchmark", "mmsi", "--path", path, "--policy", f"scripted:{script}", "--simulator", "none",
             "--mode", "direct", "--prompt-style", "official", "--out", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert (m["score"], m["accuracy"], m["protocol"]["accuracy"]) == ("official", 0.25, 0.25)   # gold A B C D: C vs B
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert [x["extracted"] for x in rows] == ["C"] * 4 and [x["correct"] for x in rows] == [False, False, True, False]
    assert [x["protocol_correct"] for x in rows] == [False, True, False, False]
    assert "protocol score (<answer> tag)" in r.stdout
    for flags, msg in ((["--prompt-style", "paper"], "prompt_style must be one of"),
                       (["--llm-extract", "localhost:9"], "http://HOST:PORT/v1#MODEL"),
                       (["--mindcube-prompt", "cogmap"], None)):
        bad = _cli("eval", "--benchmark", "mmsi", "--path", path, "--mode", "direct", "--out", tmp_path / "bad", *flags)
        if msg is None: assert bad.returncode == 0; continue   # the MindCube setting does not concern MMSI
        assert bad.returncode == 2 and msg in bad.stderr and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()


# ---- the LLM extraction fallback against a real server on 127.0.0.1 ----

def serve(port: int, log: str):
    "A tiny OpenAI-compatible judge: answers the option whose text appears in the reply being judged, else Z."
    import http.server, re
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b'{"data": []}')
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][-1]["content"]
            with open(log, "a") as f: f.write(json.dumps(body) + "\n")
            opts = dict(re.findall(r"([A-D])\. (\w+)", prompt.split("\nOptions: ")[-1].split("\n")[0]))
            reply = prompt.rsplit("Answer: ", 1)[-1]
            letter = next((k for k, v in opts.items() if v in reply), "Z")
            out = json.dumps({"choices": [{"message": {"role": "assistant", "content": letter}}]}).encode()
            self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers(); self.wfile.write(out)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.fixture
def judge(tmp_path):
    port, log = _free_port(), tmp_path / "judge.jsonl"
    p = subprocess.Popen([sys.executable, __file__, "--port", str(port), "--log", str(log)])
    try:
        for _ in range(100):
            try: urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1); break
            except OSError: time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1#judge", log
    finally:
        os.kill(p.pid, signal.SIGTERM); p.wait(timeout=10)


def test_llm_fallback_is_off_by_default_and_counted_when_on(tmp_path, judge):
    spec, log = judge
    bench = MMSIBench(write_mmsi_fixture(tmp_path / "b", n=8))
    replies = {"0": "It is to the left of the sofa.", "1": "Clearly on the right.", "2": "I can't tell.", "3": "``D``",
               "4": "It is behind the camera.", "5": "The answer is b", "6": "``C``", "7": "in front"}
    cfg = EvalConfig(benchmark="mmsi", mode="direct", save_trajectories=False)
    off = run_eval(cfg, tmp_path / "off", benchmark=bench, policy=object(), rollout_fn=replay(replies))
    assert [r["extracted"] for r in off.rows] == [None, None, None, "D", None, None, "C", None] and off.metrics["llm_extracted"] == 0
    assert not log.exists()
    on = run_eval(EvalConfig(**{**cfg.to_dict(), "llm_extract": spec}), tmp_path / "on", benchmark=bench, policy=object(),
                  rollout_fn=replay(replies))
    assert [r["extracted"] for r in on.rows] == ["A", "B", None, "D", "C", None, "C", "D"]   # the judge said Z for 2 and 5
    assert [r["llm_extracted"] for r in on.rows] == [True, True, False, False, True, False, False, True]
    assert on.metrics["llm_extracted"] == 4 and on.metrics["accuracy"] == 5 / 8 and off.metrics["accuracy"] == 2 / 8
    calls = [json.loads(l) for l in log.read_text().splitlines()]
    assert len(calls) == 6 and all(c["model"] == "judge" for c in calls)    # only the rows the rules could not read


if __name__ == "__main__":
    ap = argparse.ArgumentParser(); ap.add_argument("--port", type=int); ap.add_argument("--log")
    a = ap.parse_args(); serve(a.port, a.log)
