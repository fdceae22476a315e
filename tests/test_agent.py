"""The agent loop across modules: modes, limits, every invalid reason, provenance numbering,
batching over samples x group, determinism, timings, the CLI, and the oracle simulator."""
import json
import threading

import numpy as np
import pytest
from PIL import Image

from astra_wb.agent import AgentConfig, iter_rollout, rollout, run_one, trajectory_summary
from astra_wb.eval import cli_rollout
from astra_wb.motion import Motion
from astra_wb.policies import ScriptedPolicy, conversation_images
from astra_wb.protocol import (GOLDEN_TURNS, INVALID_REASONS, Answer, Invalid, Invoke, Observation, Sample,
                               build_messages, render_answer, render_tool_call)


# ---------------------------------------------------------------------------------------------
# A local stand-in simulator (FAKE, for these tests only): instant, deterministic images that
# encode the call, and SimulatorError on request. The real backends are tested further down.
class FakeSimulator:
    name = "fake"

    def __init__(self, fail_over_m: float = 3.0):
        self.fail_over_m, self.calls, self.lock = fail_over_m, [], threading.Lock()

    def imagine(self, sample, observations, reference_image, motion):
        from astra_wb.simulators import SimulatorError
        with self.lock: self.calls.append((sample.id, reference_image, motion.kind, motion.value))
        if motion.kind in ("lateral", "forward", "vertical") and abs(motion.value) > self.fail_over_m:
            raise SimulatorError("out_of_bounds", f"{motion.instruction()} leaves the room")
        shade = int(reference_image * 40 + abs(motion.value)) % 256
        return Observation(Image.new("RGB", (32, 24), (shade, 255 - shade, 7)),
                           len(sample.images) + len(observations) + 1, reference_image, motion, self.name)


class BatchFakeSimulator(FakeSimulator):
    "Has `imagine_batch`: the agent must hand it a whole turn's calls at once."
    def __init__(self):
        super().__init__(); self.batches = []

    def imagine_batch(self, requests):
        self.batches.append(len(requests))
        out = []
        for r in requests:
            try: out.append(self.imagine(*r))
            except Exception as e: out.append(e)
        return out


def sample(i=0, n_images=2, answer="B"):
    ims = [Image.new("RGB", (32, 24), (30 * k, 100, 200 - 30 * k)) for k in range(n_images)]
    return Sample(f"s{i}", "What is behind image 1?", ims, {"A": "a chair", "B": "a lamp", "C": "a door"}, answer, "test")


def call(ref, kind, value, why="I need another view."):
    return render_tool_call(Invoke(ref, Motion.from_tool(kind, value), why))


ANSWER_B = render_answer("B", "It is the lamp.")


# ---------------------------------------------------------------------------------------------
def test_golden_turns_classified_the_same_by_the_agent():
    "Every golden protocol turn, played as turn 1 of an agentic rollout, gets the parser's verdict."
    for text, n, reason in GOLDEN_TURNS:
        t = run_one(sample(n_images=n), ScriptedPolicy([text, ANSWER_B]), FakeSimulator(), AgentConfig(max_turns=3))
        a = t.turns[0].action
        if reason is None: assert not isinstance(a, Invalid), (text, a)
        else: assert isinstance(a, Invalid) and a.reason == reason, (text, a)
        assert (t.turns[0].feedback is not None) == (reason is not None)


def test_every_invalid_reason_is_reachable():
    seen = set()
    for text, n, reason in GOLDEN_TURNS:
        seen |= set(run_one(sample(n_images=n), ScriptedPolicy([text]), FakeSimulator(), AgentConfig(max_turns=1)).invalid_reasons)
    sim = FakeSimulator()
    seen |= set(run_one(sample(), ScriptedPolicy([ANSWER_B] * 4 + [call(1, "turn_left", 90)] * 2 + [ANSWER_B]), sim,
                        AgentConfig(mode="forced", forced_k=2, premature="retry")).invalid_reasons)   # premature_answer
    seen |= set(run_one(sample(), ScriptedPolicy([call(1, "turn_left", 90), ANSWER_B]), sim,
                        AgentConfig(mode="direct")).invalid_reasons)                      # tool_not_allowed
    seen |= set(run_one(sample(), ScriptedPolicy([call(1, "move_forward", 4), ANSWER_B]), sim).invalid_reasons)   # simulator_error
    seen |= set(run_one(sample(), ScriptedPolicy([call(1, "turn_left", 90)] * 3), sim, AgentConfig(max_turns=2)).invalid_reasons)  # over_limit

    class Cut(ScriptedPolicy):
        def respond(self, conversations, tools=None, **kw):
            out = super().respond(conversations, tools, **kw)
            self.last_finish_reasons = ["length"] * len(out)
            return out
    seen |= set(run_one(sample(), Cut(["I think the lamp is behind"]), sim, AgentConfig(max_turns=1)).invalid_reasons)  # truncated
    assert seen == set(INVALID_REASONS), set(INVALID_REASONS) - seen


def test_direct_mode_offers_no_tool_and_refuses_calls():
    seen_tools = []

    class Spy(ScriptedPolicy):
        def respond(self, conversations, tools=None, **kw):
            seen_tools.append(tools); return super().respond(conversations, tools, **kw)
    sim = FakeSimulator()
    t = run_one(sample(), Spy([call(1, "turn_left", 90), ANSWER_B]), sim, AgentConfig(mode="direct"))
    assert seen_tools == [None, None] and sim.calls == []
    assert [type(x.action).__name__ for x in t.turns] == ["Invalid", "Answer"]
    assert t.invalid_reasons == ["tool_not_allowed"] and "No tool is available" in t.turns[0].feedback
    assert (t.final_answer, t.correct, t.valid, t.meta["stop_reason"]) == ("B", True, False, "answer")
    assert "do not call any tool" in build_messages(t)[0]["content"]


def test_forced_mode_asks_for_k_calls_in_the_prompt_only():
    "Paper 4.1: Forced(k) is 'required by an explicit system prompt'; an early answer ends the trajectory, valid, and is counted."
    turns = [ANSWER_B, call(1, "turn_left", 90), ANSWER_B, call(3, "turn_left", 90), ANSWER_B]
    t = run_one(sample(), ScriptedPolicy(turns), FakeSimulator(), AgentConfig(mode="forced", forced_k=2))
    assert [type(x.action).__name__ for x in t.turns] == ["Answer"] and t.invalid_reasons == []
    assert (t.valid, t.final_answer, t.meta["stop_reason"], t.meta["premature_answer"]) == (True, "B", "premature_answer", True)
    assert "exactly 2 times" in build_messages(t)[0]["content"]          # the prompt still asks for the calls
    ok = run_one(sample(), ScriptedPolicy(turns[1:2] + turns[3:]), FakeSimulator(), AgentConfig(mode="forced", forced_k=2))
    assert ok.valid and ok.n_tool_calls == 2 and ok.meta["premature_answer"] is False
    from astra_wb.agent import trajectory_summary
    assert trajectory_summary(t)["premature_answer"] is True and trajectory_summary(ok)["premature_answer"] is False


def test_forced_mode_can_reject_early_answers():
    "The workbench's addition, an option: premature='retry' refuses answers before the k-th call; 'accept' ends invalid."
    turns = [ANSWER_B, call(1, "turn_left", 90), ANSWER_B, call(3, "turn_left", 90), ANSWER_B]
    t = run_one(sample(), ScriptedPolicy(turns), FakeSimulator(), AgentConfig(mode="forced", forced_k=2, premature="retry"))
    assert [type(x.action).__name__ for x in t.turns] == ["Invalid", "Invoke", "Invalid", "Invoke", "Answer"]
    assert t.invalid_reasons == ["premature_answer"] * 2 and not t.valid and t.forced_k == 2
    assert "(1 so far)" in t.turns[2].feedback and t.meta["premature_answer"] is False
    early = run_one(sample(), ScriptedPolicy(turns), FakeSimulator(), AgentConfig(mode="forced", premature="accept"))
    assert (len(early.turns), early.final_answer, early.valid, early.meta["stop_reason"]) == (1, "B", False, "premature_answer")
    with pytest.raises(ValueError, match="premature"):
        AgentConfig(mode="forced", premature="enforce")


def test_agentic_limits_are_enforced_and_configurable():
    many_calls = [call(1, "turn_left", 30 + 10 * k) for k in range(12)]
    sim = FakeSimulator()
    t = run_one(sample(), ScriptedPolicy(many_calls), sim, AgentConfig())
    assert len(t.turns) == 10 and t.n_tool_calls == 3 and len(sim.calls) == 3
    assert t.invalid_reasons == ["tool_not_allowed"] * 7
    assert (t.meta["stop_reason"], t.valid, t.final_answer) == ("over_limit", False, None)
    t = run_one(sample(), ScriptedPolicy(many_calls), FakeSimulator(), AgentConfig(max_tool_rounds=1, max_turns=4))
    assert len(t.turns) == 4 and t.n_tool_calls == 1 and t.invalid_reasons == ["tool_not_allowed"] * 3
    # a simulator failure uses up a tool round
    t = run_one(sample(), ScriptedPolicy([call(1, "move_forward", 4)] * 3 + [call(1, "turn_left", 30), ANSWER_B]), FakeSimulator())
    assert t.invalid_reasons == ["simulator_error"] * 3 + ["tool_not_allowed"] and t.meta["tool_rounds"] == 3
    assert "out_of_bounds" in t.turns[0].action.detail and "leaves the room" in t.turns[0].feedback


def test_provenance_numbering_and_image_order():
    turns = [call(2, "turn_right", 90), call(4, "move_forward", 1.5), call(5, "pitch_up", 30), ANSWER_B]
    t = run_one(sample(n_images=3), ScriptedPolicy(turns), FakeSimulator())
    assert [(o.index, o.reference_image) for o in t.observations] == [(4, 2), (5, 4), (6, 5)]
    assert [o.provenance() for o in t.observations] == [
        "Image 4: imagined from image 2 after turning 90 degrees to the right",
        "Image 5: imagined from image 4 after moving 1.5 meters forward",
        "Image 6: imagined from image 5 after pitching up by 30 degrees"]
    msgs = build_messages(t)
    assert [m["role"] for m in msgs] == ["system", "user"] + ["assistant", "tool"] * 3 + ["assistant"]
    assert all(a is b for a, b in zip(conversation_images(msgs), t.all_images)) and len(t.all_images) == 6
    # a reference to an image that does not exist yet is out_of_range, numbering stays intact
    t = run_one(sample(n_images=2), ScriptedPolicy([call(3, "turn_left", 90), call(1, "turn_left", 90), call(3, "turn_left", 90), ANSWER_B]),
                FakeSimulator())
    assert t.invalid_reasons == ["out_of_range"] and [(o.index, o.reference_image) for o in t.observations] == [(3, 1), (4, 3)]


def test_simulator_index_is_corrected_to_the_conversation():
    class Sloppy(FakeSimulator):
        def imagine(self, *a):
            o = super().imagine(*a); o.index = 99; return o
    t = run_one(sample(), ScriptedPolicy([call(1, "turn_left", 90), ANSWER_B]), Sloppy())
    assert t.observations[0].index == 3 and t.observations[0].meta["index_from_simulator"] == 99


def test_batched_rollout_samples_by_group():
    scripts = {"s0": [ANSWER_B], "s1": [call(1, "turn_left", 90), ANSWER_B],
               "s2": [call(1, "turn_left", 90), call(2, "turn_right", 45), ANSWER_B], "s2#2": [render_answer("A", "chair")]}
    pol, sim = ScriptedPolicy(scripts), BatchFakeSimulator()
    trajs = rollout([sample(i) for i in range(3)], pol, sim, AgentConfig(group_size=3, progress=True))
    assert [(t.sample.id, t.meta["group_index"]) for t in trajs] == [(f"s{i}", g) for i in range(3) for g in range(3)]
    assert pol.batch_sizes == [9, 5, 2]            # one policy call per turn on every live conversation
    assert sim.batches == [5, 2]                     # a turn's simulator calls go out together
    assert [t.final_answer for t in trajs] == ["B"] * 8 + ["A"]
    assert all(t.policy == "scripted" and t.simulator == "fake" for t in trajs)
    # threads give the same trajectories as one call at a time
    a = rollout([sample(i) for i in range(3)], ScriptedPolicy(scripts), FakeSimulator(), AgentConfig(group_size=2, simulator_workers=4))
    b = rollout([sample(i) for i in range(3)], ScriptedPolicy(scripts), FakeSimulator(), AgentConfig(group_size=2))
    assert [_strip(trajectory_summary(x)) for x in a] == [_strip(trajectory_summary(x)) for x in b]
    assert rollout([], pol, sim, AgentConfig()) == []


def test_max_batch_keeps_results():
    scripts = {f"s{i}": [call(1, "turn_left", 10 * (i + 1))] * i + [ANSWER_B] for i in range(5)}
    full = rollout([sample(i) for i in range(5)], ScriptedPolicy(scripts), FakeSimulator(), AgentConfig())
    pol = ScriptedPolicy(scripts)
    part = rollout([sample(i) for i in range(5)], pol, FakeSimulator(), AgentConfig(max_batch=2))
    assert max(pol.batch_sizes) == 2
    assert [_strip(trajectory_summary(x)) for x in part] == [_strip(trajectory_summary(x)) for x in full]


def _strip(d):
    d = dict(d); d.pop("timings"); return d


def test_deterministic_and_timed():
    def once():
        scripts = {"s0": [call(1, "turn_left", 90), ANSWER_B], "s1": [call(2, "move_left", 1), call(3, "turn_right", 20), ANSWER_B]}
        return rollout([sample(0), sample(1)], ScriptedPolicy(scripts), FakeSimulator(), AgentConfig(group_size=2, seed=3))
    a, b = once(), once()
    assert [[x.text for x in t.turns] for t in a] == [[x.text for x in t.turns] for t in b]
    assert [[np.asarray(o.image).tolist() for o in t.observations] for t in a] == [[np.asarray(o.image).tolist() for o in t.observations] for t in b]
    for t in a:
        tm = t.timings
        assert set(tm) == {"policy", "simulator", "loop", "total"} and min(tm.values()) >= 0
        assert abs(tm["total"] - tm["policy"] - tm["simulator"] - tm["loop"]) < 1e-9
        assert all({"policy", "loop"} <= set(x.timings) for x in t.turns)
        assert all("simulator" in x.timings for x in t.turns if isinstance(x.action, Invoke))


def test_iter_rollout_streams_each_turn():
    turns = [call(1, "turn_left", 90), "not a turn", ANSWER_B]
    states = [(len(t.turns), t.meta["stop_reason"]) for t in iter_rollout(sample(), ScriptedPolicy(turns), FakeSimulator())]
    assert states == [(1, None), (2, None), (3, "answer")]


def test_bad_policy_output_is_an_error_not_a_crash_of_the_turn():
    class Short:
        name = "short"
        def respond(self, conversations, tools=None, **kw): return ["x"] * (len(conversations) - 1)
    with pytest.raises(ValueError, match="'short' returned 1 turns for 2 conversations"):
        rollout([sample(0), sample(1)], Short(), FakeSimulator())

    class Nones:
        name = "nones"
        def respond(self, conversations, tools=None, **kw): return [None] * len(conversations)
    t = run_one(sample(), Nones(), FakeSimulator(), AgentConfig(max_turns=2))
    assert t.invalid_reasons == ["empty", "empty"]


def test_options_text_answer_maps_to_letter_and_open_questions_keep_text():
    t = run_one(sample(), ScriptedPolicy([render_answer("a lamp", "lamp")]), FakeSimulator())
    assert t.final_answer == "B" and t.correct
    open_q = Sample("o", "How many chairs?", [Image.new("RGB", (8, 8))], {}, "3", "count")
    t = run_one(open_q, ScriptedPolicy([render_answer("3", "count them")]), FakeSimulator())
    assert t.final_answer == "3" and t.correct


# ---------------------------------------------------------------------------------------------
# The real simulator: the synthetic bench with the oracle.
def test_oracle_rollout_on_synthetic_questions():
    simulators = pytest.importorskip("astra_wb.simulators")
    synthqa = pytest.importorskip("astra_wb.synthqa")
    from astra_wb.geometry import apply_motion
    samples = synthqa.generate_bench(3, seed=1)
    scripts = {s.id: [call(1, "turn_left", 90), call(len(s.images) + 1, "move_forward", 0.5), ANSWER_B] for s in samples}
    trajs = rollout(samples, ScriptedPolicy(scripts), simulators.get_simulator("oracle"), AgentConfig())
    for s, t in zip(samples, trajs):
        o1, o2 = t.observations
        assert (o1.index, o2.index) == (len(s.images) + 1, len(s.images) + 2) and o2.reference_image == len(s.images) + 1
        assert np.allclose(o1.pose, apply_motion(np.asarray(s.poses[0]), "yaw", -90.0), atol=1e-6)
        assert np.allclose(o2.pose, apply_motion(o1.pose, "forward", 0.5), atol=1e-6)
        assert o1.image.size == s.images[0].size and np.asarray(o1.image).std() > 0
        assert t.valid and t.timings["simulator"] > 0


def test_cli_rollout(tmp_path, capsys):
    pytest.importorskip("astra_wb.simulators")
    turns = tmp_path / "turns.json"
    turns.write_text(json.dumps([call(1, "turn_right", 45), ANSWER_B]))
    rc = cli_rollout(["--policy", f"scripted:{turns}", "--simulator", "oracle", "--n", "2", "--group-size", "2",
                      "--json", "--out", str(tmp_path / "out")])
    assert rc == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    assert [r["group_index"] for r in rows] == [0, 1, 0, 1] and all(r["n_tool_calls"] == 1 and r["valid"] for r in rows)
    from astra_wb.protocol import load_trajectories_jsonl
    back = load_trajectories_jsonl(tmp_path / "out" / "trajectories.jsonl")
    assert [t.observations[0].provenance() for t in back] == \
        [f"Image {len(t.sample.images) + 1}: imagined from image 1 after turning 45 degrees to the right" for t in back]
    assert cli_rollout(["--policy", "nope", "--n", "1"]) == 2
    assert "unknown policy" in capsys.readouterr().err


def test_expert_with_oracle_is_deterministic_per_seed():
    simulators = pytest.importorskip("astra_wb.simulators")
    synthqa = pytest.importorskip("astra_wb.synthqa")
    from astra_wb.policies import get_policy
    samples = [s for s in synthqa.generate_bench(8, seed=2) if s.meta.get("needs_imagination")][:3]
    def once(seed):
        trajs = rollout(samples, get_policy("expert"), simulators.get_simulator("oracle"),
                        AgentConfig(group_size=2, temperature=1.0, seed=seed))
        return [([x.text for x in t.turns], [np.asarray(o.image).tobytes() for o in t.observations]) for t in trajs]
    a = once(0)
    assert a == once(0)
    assert sum(len(turns) for turns, _ in a) >= len(a)   # every trajectory has at least one turn


def test_apply_turn_matches_the_loop():
    from astra_wb.agent import apply_turn
    from astra_wb.protocol import Trajectory
    turns = [ANSWER_B, call(1, "move_forward", 4), call(1, "turn_left", 90), "no action", call(3, "turn_left", 90), ANSWER_B]
    cfg = AgentConfig(mode="forced", forced_k=2)
    looped = run_one(sample(), ScriptedPolicy(turns), FakeSimulator(), cfg)
    manual = Trajectory(sample(), mode="forced", forced_k=2)
    for text in turns:
        if manual.meta.get("stop_reason"): break
        apply_turn(manual, text, FakeSimulator(), cfg)
    assert [(x.text, type(x.action).__name__, x.feedback) for x in manual.turns] == \
           [(x.text, type(x.action).__name__, x.feedback) for x in looped.turns]
    assert (manual.final_answer, manual.valid, manual.meta["stop_reason"], manual.invalid_reasons) == \
           (looped.final_answer, looped.valid, looped.meta["stop_reason"], looped.invalid_reasons)
