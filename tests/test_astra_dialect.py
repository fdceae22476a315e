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
