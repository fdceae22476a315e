"""Evaluation runs across processes: a killed run resumes to the same rows and metrics; RANK/WORLD_SIZE shards merge."""
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest

from astra_wb.eval import load_run, read_rows

# A stand-in for astra_wb.agent.rollout that is slow enough to be killed mid-run and fully deterministic;
# it logs every sample it rolls out so the test can tell what a restart redid.
SCRIPT = textwrap.dedent('''
    import hashlib, os, sys, time
    from pathlib import Path
    from PIL import Image
    from astra_wb.protocol import Sample, Trajectory, Turn, Answer, Invoke, Invalid
    from astra_wb.motion import Motion
    from astra_wb.benchmarks import SynthBench
    from astra_wb.eval import EvalConfig, run_eval

    out, log, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    cats = ["Positional Relationship (Cam.\\u2013Obj.)", "Motion (Cam.)", "MindCube rotation"]
    samples = [Sample(id=f"s{i:03d}", question="Which?", images=[Image.new("RGB", (16, 12), (i, 0, 0))],
                      options={"A": "x", "B": "y", "C": "z"}, answer="ABC"[i % 3], category=cats[i % 3],
                      meta={"source": "synth", "group": ["PR", "Mot.", "Rotation"][i % 3], "needs_imagination": i % 2 == 0})
               for i in range(24)]

    def rollout(batch, policy, simulator, config):
        trajs = []
        for s in batch:
            time.sleep(delay)
            with open(log, "a") as f: f.write(s.id + "\\n")
            h = int(hashlib.sha1(s.id.encode()).hexdigest(), 16)
            turns = []
            if config.mode != "direct" and h % 3 == 0:
                turns.append(Turn("<think>t</think><tool_call>{}</tool_call>", Invoke(1, Motion("yaw", 90), "t")))
            if h % 7 == 0: turns.append(Turn("", Invalid("empty", "")))
            letter = "ABC"[h % 3]
            turns.append(Turn(f"<think>t</think><answer>{letter}</answer>", Answer(letter, "t")))
            trajs.append(Trajectory(sample=s, mode=config.mode, turns=turns, final_answer=letter, valid=h % 7 != 0,
                                    timings={"total": 0.0}))
        return trajs

    cfg = EvalConfig(benchmark="synth", policy="stand-in", simulator="none", mode="agentic", batch_size=2)
    run_eval(cfg, out, benchmark=SynthBench(samples=samples), policy=object(), rollout_fn=rollout, merge_timeout_s=120)
''')


def _start(tmp_path, out, log, delay, env=None):
    script = tmp_path / "run.py"; script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(out), str(log), str(delay)], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stable(rows):
    return [{k: v for k, v in r.items() if k != "timings"} for r in rows]


def _metrics(folder):
    m = json.loads((Path(folder) / "metrics.json").read_text()); m.pop("seconds_per_row"); return m


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    "An uninterrupted single-process run to compare against."
    tmp = tmp_path_factory.mktemp("ref")
    p = _start(tmp, tmp / "ref", tmp / "ref.log", 0.0)
    assert p.wait(60) == 0, p.stderr.read()
    return tmp / "ref"


def test_killed_run_resumes_to_same_rows_and_metrics(tmp_path, ref):

    out, log = tmp_path / "killed", tmp_path / "killed.log"
    p = _start(tmp_path, out, log, 0.15)
    deadline = time.time() + 60
    while len(read_rows(out / "results.jsonl")) < 6:
        assert p.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    done_before = {r["id"] for r in read_rows(out / "results.jsonl")}
    assert 6 <= len(done_before) < 24 and not (out / "metrics.json").exists()
    with open(out / "results.jsonl", "a") as f: f.write('{"id": "s0')        # as if killed mid-write

    p = _start(tmp_path, out, log, 0.0)
    assert p.wait(60) == 0, p.stderr.read()
    rows = load_run(out).rows
    assert [r["id"] for r in rows] == [f"s{i:03d}" for i in range(24)]          # none missing, none twice
    assert _stable(rows) == _stable(load_run(ref).rows)
    assert _metrics(out) == _metrics(ref)
    rolled = log.read_text().split()
    assert set(rolled) == {f"s{i:03d}" for i in range(24)}
    assert not done_before & set(rolled[len(rolled) - (24 - len(done_before)):])  # the restart skipped finished rows
    assert all((out / r["trajectory"] / "trajectory.json").exists() for r in rows)


def test_two_rank_processes_merge(tmp_path, ref):
    out = tmp_path / "sharded"
    procs = [_start(tmp_path, out, tmp_path / f"r{r}.log", 0.02, env={"RANK": str(r), "WORLD_SIZE": "2"}) for r in (1, 0)]
    for p in procs: assert p.wait(90) == 0, p.stderr.read()
    assert sorted((tmp_path / "r0.log").read_text().split()) == [f"s{i:03d}" for i in range(0, 24, 2)]
    assert sorted((tmp_path / "r1.log").read_text().split()) == [f"s{i:03d}" for i in range(1, 24, 2)]
    assert _stable(load_run(out).rows) == _stable(load_run(ref).rows)
    assert _metrics(out) == _metrics(ref)
    assert not list(out.glob("results.rank*")) and not list(out.glob("done.rank*"))


def test_premature_rate_counts_early_forced_answers(tmp_path):
    "Forced(k) is prompt-only: an early answer ends the trajectory, stays valid, and is counted; Agentic counts none."
    from astra_wb.benchmarks import SynthBench
    from astra_wb.eval import EvalConfig, run_eval
    from astra_wb.motion import Motion
    from astra_wb.policies import ScriptedPolicy
    from astra_wb.protocol import Invoke, render_answer, render_tool_call

    bench = SynthBench.generate(4, seed=0)
    samples = list(bench)
    call = render_tool_call(Invoke(1, Motion("yaw", 45.0), "look"))
    # samples 0 and 1 answer at once; 2 and 3 make the two calls first
    script = {s.id: ([] if i < 2 else [call, call]) + [render_answer(s.answer, "done")] for i, s in enumerate(samples)}
    runs = {mode: run_eval(EvalConfig(mode=mode, forced_k=2, synth_n=4, save_trajectories=False), tmp_path / mode,
                           benchmark=bench, policy=ScriptedPolicy(script))
            for mode in ("forced", "agentic")}
    forced, agentic = runs["forced"], runs["agentic"]
    assert [r["premature"] for r in forced.rows] == [True, True, False, False]
    assert all(r["valid"] for r in forced.rows)                     # prompt-only: an early answer stays valid
    assert forced.metrics["premature_rate"] == 0.5
    assert agentic.metrics["premature_rate"] == 0.0 and not any(r["premature"] for r in agentic.rows)
    assert json.loads((tmp_path / "forced" / "metrics.json").read_text())["premature_rate"] == 0.5
    from astra_wb.report import table1_rows
    row = next(r for r in table1_rows([agentic, forced]) if r[0] == "premature %")
    assert row[1:] == ["0.0", "50.0"]
