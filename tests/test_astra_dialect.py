"""The Astra project page's tool-call dialect: `<action>world_simulator_tool(...)</action>` with the paper's axis names."""
from hypothesis import given, settings, strategies as st

from astra_wb.motion import Motion
from astra_wb.protocol import DIALECTS, Answer, Invalid, Invoke, parse_astra_turn, parse_turn

PAGE_CALL = "<think>I need the view behind.</think>\n<action>world_simulator_tool(reference_image=1, motion_type=dy, value=1.5)</action>"


def test_the_page_call_parses_as_the_workbench_call_it_means():
    a = DIALECTS["astra"](PAGE_CALL, 2)
    assert a == Invoke(1, Motion("forward", 1.5), "I need the view behind.")
    assert isinstance(parse_turn(PAGE_CALL, 2), Invalid)          # the workbench dialect does not read it


def test_axis_names_map_as_the_paper_does():
    for axis, kind in (("dx", "lateral"), ("dy", "forward"), ("dz", "vertical"), ("dyaw", "yaw"), ("dpitch", "pitch")):
        a = parse_astra_turn(f"<think>t</think><action>world_simulator_tool(reference_image=2, motion_type={axis}, value=-0.5)</action>", 2)
        assert a == Invoke(2, Motion(kind, -0.5), "t"), (axis, a)


def test_answers_and_invalid_turns():
    assert parse_astra_turn("<think>t</think><action>B</action>", 2) == Answer("B", "t")
    assert parse_astra_turn("<think>t</think><action>world_simulator_tool(reference_image=1, motion_type=dy, value=9)</action>", 2).reason == "out_of_range"
    assert parse_astra_turn("<think>t</think><action>world_simulator_tool(reference_image=1", 2).reason == "truncated"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["<think>", "</think>", "<action>", "</action>", "world_simulator_tool(", ")", "=", ",",
                                 "reference_image", "motion_type", "dy", "value", "1.5", "B", "<answer>", " "]), max_size=20))
def test_never_raises(pieces):
    out = parse_astra_turn("".join(pieces), 3)
    assert isinstance(out, (Invoke, Answer, Invalid))


def test_a_released_astra_checkpoint_runs_through_the_agent_and_eval_unchanged(tmp_path):
    """A policy writing the page's dialect is evaluated as it writes: the loop calls the simulator with the axis it
    named and scores its `<action>B</action>` answer; under the workbench dialect the same turns are all invalid."""
    import json
    from test_agent import FakeSimulator, sample
    from astra_wb.agent import AgentConfig, rollout
    from astra_wb.eval import EvalConfig, agent_config, run_eval
    from astra_wb.policies import ScriptedPolicy
    turns = [PAGE_CALL, "<think>The imagined view shows the lamp.</think>\n<action>B</action>"]
    sim = FakeSimulator()
    t = rollout([sample(0)], ScriptedPolicy(turns), sim, AgentConfig(dialect="astra"))[0]
    assert [type(x.action).__name__ for x in t.turns] == ["Invoke", "Answer"]
    assert sim.calls == [("s0", 1, "forward", 1.5)]
    assert (t.final_answer, t.correct, t.valid, t.n_tool_calls) == ("B", True, True, 1)
    plain = rollout([sample(0)], ScriptedPolicy(turns), FakeSimulator(), AgentConfig(max_turns=2))[0]
    assert not plain.valid and all(isinstance(x.action, Invalid) for x in plain.turns)
    assert agent_config(EvalConfig(dialect="astra")).dialect == "astra"
    try: AgentConfig(dialect="qwen")
    except ValueError as e: assert "dialect" in str(e)
    else: raise AssertionError("an unknown dialect must be refused")
    script = tmp_path / "turns.json"
    script.write_text(json.dumps(["<think>I can tell from image 1.</think>\n<action>B</action>"]))
    res = run_eval(EvalConfig(policy=f"scripted:{script}", mode="direct", dialect="astra", synth_n=4, limit=4,
                              save_trajectories=False), tmp_path / "run")
    assert res.metrics["valid_rate"] == 1.0 and res.metrics["protocol"]["valid_rate"] == 1.0
    assert all(r["valid"] for r in res.rows) and [r["extracted"] for r in res.rows] == ["B"] * 4
