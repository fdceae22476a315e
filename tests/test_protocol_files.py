"""Trajectory files from untrusted sources: symlinks out of the folder are refused, bad JSONL lines are named."""
import json
import numpy as np
import pytest
from PIL import Image

from astra_wb.motion import Motion
from astra_wb.protocol import (Answer, Invoke, Observation, ProtocolError, Sample, Trajectory, Turn,
                               load_trajectories_jsonl, load_trajectory, save_trajectories_jsonl,
                               save_trajectory, render_tool_call)


def _traj():
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    s = Sample("s1", "Where is the lamp?", [im], {"A": "left", "B": "right"}, "A", "Positional Relationship (Cam.–Obj.)")
    inv = Invoke(1, Motion("yaw", 90), "look right")
    return Trajectory(s, "agentic", turns=[Turn(render_tool_call(inv), inv, Observation(im, 2, 1, inv.motion, "oracle")),
                                           Turn("<think>seen</think><answer>A</answer>", Answer("A", "seen"))],
                      final_answer="A")


def test_symlink_out_of_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    folder = save_trajectory(_traj(), tmp_path / "t")
    target = folder / "images" / "given_1.png"
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(ProtocolError, match="leads outside its folder"):
        load_trajectory(folder)


def test_jsonl_bad_line_named(tmp_path):
    path = save_trajectories_jsonl([_traj(), _traj()], tmp_path / "runs.jsonl")
    lines = path.read_text().splitlines()
    bad = json.loads(lines[1]); del bad["sample"]["question"]
    path.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ProtocolError, match=r"runs.jsonl:2.*question"):
        load_trajectories_jsonl(path)
    path.write_text(lines[0] + "\n{oops\n")
    with pytest.raises(ProtocolError, match=r"runs.jsonl:2: not valid JSON"):
        load_trajectories_jsonl(path)
    path.write_text(lines[0] + "\n")
    assert load_trajectories_jsonl(path)[0].turns[0].observation.provenance() == \
        "Image 2: imagined from image 1 after turning 90 degrees to the right"
