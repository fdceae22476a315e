"""World simulators: conformance of every registered backend, oracle exactness, reprojection against the oracle,
the monocular-depth path, the perturbed dial, the non-privileged quality ladder, the controls, the cache and the CLI."""
import json, os, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

from astra_wb.geometry import decompose, intrinsics
from astra_wb.motion import Motion
from astra_wb.protocol import Sample, save_sample
from astra_wb.scene import make_scene, render, sample_cameras
from astra_wb.backends import CachedSimulator, OracleSimulator, PerturbedSimulator, ReprojectSimulator
from astra_wb.depth import build_tiny_depth_model
from astra_wb.simulators import (SIMULATORS, WRAPPERS, SimulatorError, check_simulator, cli_imagine, get_simulator, parse_spec,
                                 register_simulator, scene_sample)


def start_stub(*args):
    "The stub vLLM-Omni server of this checkout as a separate process on 127.0.0.1 and a free port; returns (process, url)."
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))   # this checkout's stub, whatever is installed
    proc = subprocess.Popen([sys.executable, "-m", "astra_wb.vllm_omni", "--port", "0", *args], stdout=subprocess.PIPE,
                            text=True, env=env)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on http://127.0.0.1:"), line
    return proc, line.split()[-1]


def stop(proc):
    os.kill(proc.pid, 15)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stub_url():
    proc, url = start_stub()
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def sample():
    return scene_sample(make_scene(5), width=96, height=72, n_views=3, seed=2)


@pytest.fixture(scope="module")
def learned_checkpoint(tmp_path_factory):
    "A tiny untrained learned-simulator checkpoint: conformance is about the interface, not the weights."
    from astra_wb.learned_sim import LearnedSim, LearnedSimConfig
    return str(LearnedSim(LearnedSimConfig(base=4, levels=2)).save_pretrained(tmp_path_factory.mktemp("learned") / "m"))


def _spec(name, stub_url, checkpoint=None):
    if name == "vllm-omni": return f"vllm-omni:{stub_url}"
    if name == "learned": return f"learned:{checkpoint}"
    return f"{name}(oracle)" if name in WRAPPERS else name


@pytest.mark.parametrize("name", sorted(SIMULATORS))
def test_every_registered_backend_conforms(name, stub_url, sample, learned_checkpoint):
    sim = get_simulator(_spec(name, stub_url, learned_checkpoint))
    obs = check_simulator(sim, sample)
    assert obs.image.size == (96, 72)


def test_wrappers_around_every_backend(stub_url, sample):
    for inner in ("oracle", "reproject", f"vllm-omni:{stub_url}"):
        check_simulator(get_simulator(f"cached(perturbed({inner},pose_noise=0.1,color_jitter=0.05))"), sample)


@pytest.mark.parametrize("motion", [Motion("lateral", -0.7), Motion("forward", 1.2), Motion("vertical", 0.4),
                                    Motion("yaw", -120), Motion("pitch", 35)])
def test_oracle_is_the_scene_seen_from_the_moved_camera(motion, sample):
    obs = OracleSimulator().imagine(sample, [], 2, motion)
    expect = dict(zip(("lateral", "forward", "vertical", "yaw", "pitch"), range(5)))[motion.kind]
    d = decompose(sample.poses[1], obs.pose)
    np.testing.assert_allclose(d[expect], motion.value, atol=1e-6)
    assert np.abs(np.delete(d, expect)).max() < 1e-6
    truth = render(make_scene(5), obs.pose, sample.intrinsics[1], 96, 72)
    np.testing.assert_array_equal(np.asarray(obs.image), truth.rgb)
    np.testing.assert_allclose(obs.depth, truth.depth)


def test_reprojection_agrees_with_the_oracle_where_it_sees(sample):
    "On seen pixels reprojection matches the oracle; the unseen share grows with the turn."
    oracle, rep = OracleSimulator(), ReprojectSimulator(use_context=False)
    holes = []
    for deg in (10, 30, 50):
        o, r = oracle.imagine(sample, [], 1, Motion("yaw", deg)), rep.imagine(sample, [], 1, Motion("yaw", deg))
        seen = ~r.mask
        diff = np.abs(np.asarray(o.image).astype(int) - np.asarray(r.image)).max(-1)
        assert (diff[seen] < 40).mean() > 0.95              # all but edges resampled at 96x72
        assert (np.asarray(r.image)[r.mask] == (255, 0, 255)).all()
        holes.append(r.mask.mean())
    assert holes[0] < holes[1] < holes[2]
    r = rep.imagine(sample, [], 1, Motion("forward", 0.5))
    assert r.mask.mean() < 0.1                                     # moving in: little is unseen, no cracks


def test_reproject_with_a_monocular_depth_model_from_a_spec(tmp_path, sample):
    "The depth path through transformers, with a tiny random Depth Anything model built from a config."
    build_tiny_depth_model(tmp_path, "metric", image_size=28, max_depth=8)
    sim = get_simulator(f"reproject(depth_model={tmp_path})")
    bare = Sample("bare", "q", [sample.images[0]])                  # no pose, no intrinsics, no depth
    obs = sim.imagine(bare, [], 1, Motion("yaw", -25))
    assert obs.depth is not None and (obs.depth[~obs.mask] > 0).all()
    assert obs.mask[:, :3].all() and not obs.mask[:, -30:].any()   # turned left: the new strip is on the left
    np.testing.assert_allclose(obs.intrinsics, intrinsics(96, 72, 60))
    with pytest.raises(SimulatorError) as e: get_simulator(f"reproject(depth_model={tmp_path / 'missing'})").imagine(bare, [], 1, Motion("yaw", 5))
    assert e.value.reason == "backend"


def test_perturbed_dial_is_seeded_and_monotone(sample):
    def err(level, seed):
        o = PerturbedSimulator(OracleSimulator(), pose_noise=level, seed=seed).imagine(sample, [], 1, Motion("forward", 1.0))
        return np.abs(decompose(o.pose, np.array(o.meta["true_pose"])))
    e1 = np.mean([err(0.1, s) for s in range(12)], 0); e5 = np.mean([err(0.5, s) for s in range(12)], 0)
    assert (e5[:2] > 2 * e1[:2]).all() and e5[3] > 2 * e1[3]
    a = PerturbedSimulator(OracleSimulator(), 0.3, dropout=0.3, color_jitter=0.2, seed=4).imagine(sample, [], 1, Motion("yaw", 30))
    b = PerturbedSimulator(OracleSimulator(), 0.3, dropout=0.3, color_jitter=0.2, seed=4).imagine(sample, [], 1, Motion("yaw", 30))
    c = PerturbedSimulator(OracleSimulator(), 0.3, dropout=0.3, color_jitter=0.2, seed=5).imagine(sample, [], 1, Motion("yaw", 30))
    np.testing.assert_array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.meta == b.meta and a.meta != c.meta
    with pytest.raises(ValueError): PerturbedSimulator(OracleSimulator(), dropout=1.5)


def test_perturbed_around_a_pose_free_backend_scales_the_motion(stub_url, sample):
    sim = get_simulator(f"perturbed(vllm-omni:{stub_url},pose_noise=0.5,seed=3)")
    obs = sim.imagine(sample, [], 1, Motion("forward", 1.0))
    assert obs.motion == Motion("forward", 1.0)                      # what was asked
    assert obs.meta["true_motion"][0] == "forward" and obs.meta["true_motion"][1] != 1.0   # what was done


def test_cache_survives_processes_and_ignores_broken_entries(tmp_path, sample, capsys):
    calls = []
    class Counting(OracleSimulator):
        def render_at(self, *a, **k): calls.append(1); return super().render_at(*a, **k)
    c = CachedSimulator(Counting(), cache_dir=tmp_path)
    first = c.imagine(sample, [], 1, Motion("yaw", 15))
    c.imagine(sample, [], 1, Motion("yaw", 15))
    assert len(calls) == 1
    key = first.meta["cache_key"]
    fresh = CachedSimulator(Counting(), cache_dir=tmp_path)
    again = fresh.imagine(sample, [], 1, Motion("yaw", 15))
    assert len(calls) == 1 and (fresh.hits, fresh.misses) == (1, 0)
    np.testing.assert_array_equal(np.asarray(again.image), np.asarray(first.image))
    np.testing.assert_allclose(again.pose, first.pose)
    (tmp_path / f"{key}.json").write_text("{not json")
    CachedSimulator(Counting(), cache_dir=tmp_path).imagine(sample, [], 1, Motion("yaw", 15))
    assert len(calls) == 2 and "unreadable cache entry" in capsys.readouterr().err
    with pytest.raises(SimulatorError): c.imagine(sample, [], 9, Motion("yaw", 15))        # errors are not cached
    assert c.misses == 1


def test_the_ladder_degrades_fidelity_step_by_step():
    """Against the oracle, each rung of reproject's non-privileged ladder renders fewer pixels right (a hole or a
    colour off by more than 40 counts as wrong), averaged over motions; fill leaves no hole; fewer views leave more holes."""
    s = scene_sample(make_scene(7), width=128, height=96, n_views=3, seed=4)
    oracle = OracleSimulator()
    motions = [Motion("yaw", 30), Motion("yaw", -30), Motion("forward", 1.0), Motion("lateral", 0.5)]
    def wrong(spec):
        sim = get_simulator(spec)
        errs = []
        for r in (1, 2, 3):
            for m in motions:
                o, t = sim.imagine(s, [], r, m), oracle.imagine(s, [], r, m)
                bad = np.abs(np.asarray(o.image).astype(int) - np.asarray(t.image)).max(-1) > 40
                errs.append((bad | o.mask).mean())
        return float(np.mean(errs))
    rungs = ["reproject", "reproject(depth_noise=0.05,pose_noise=0.05)", "reproject(depth_noise=0.15,pose_noise=0.15,max_views=2)",
             "reproject(depth_noise=0.3,pose_noise=0.3,max_views=1)"]
    errs = [wrong(x) for x in rungs]
    assert errs == sorted(errs) and errs[-1] > errs[0] + 0.1, errs
    holes = lambda spec: np.mean([get_simulator(spec).imagine(s, [], 1, m).meta["holes"] for m in motions])
    assert holes("reproject(max_views=1)") > holes("reproject")
    assert not get_simulator("reproject(fill=true)").imagine(s, [], 1, Motion("yaw", 30)).mask.any()


def test_privilege_is_declared_and_inherited():
    assert get_simulator("oracle").privileged and get_simulator("perturbed(oracle,pose_noise=0.1)").privileged
    assert get_simulator("cached(perturbed(oracle))").privileged
    for spec in ("reproject", "perturbed(reproject)", "cached(reproject)", "blank", "copy"):
        assert not getattr(get_simulator(spec), "privileged", False), spec
    s = scene_sample(make_scene(7), width=64, height=48)
    assert get_simulator("oracle").imagine(s, [], 1, Motion("yaw", 30)).meta["privileged"] is True
    assert get_simulator("reproject").imagine(s, [], 1, Motion("yaw", 30)).meta["privileged"] is False


def test_spec_strings():
    assert parse_spec("cached(perturbed(reproject(fov_deg=70),pose_noise=0.2,seed=1),cache_dir=/tmp/x y)") == \
        ("cached", ["perturbed(reproject(fov_deg=70),pose_noise=0.2,seed=1)"], {"cache_dir": "/tmp/x y"})
    sim = get_simulator("cached(perturbed(reproject(fov_deg=70),pose_noise=0.2,seed=1),maxsize=3)")
    assert sim.inner.inner.fov_deg == 70 and sim.inner.seed == 1 and sim.maxsize == 3
    for bad in ("", "oracle)", "cached(oracle", "perturbed(pose_noise=1)", "nope:1", "oracle(1)"):
        with pytest.raises(ValueError): get_simulator(bad)
    register_simulator("oracle-alias", "astra_wb.backends:OracleSimulator")
    try: assert isinstance(get_simulator("oracle-alias"), OracleSimulator)
    finally: SIMULATORS.pop("oracle-alias")
    register_simulator("ghost", "astra_wb.nowhere:Ghost")
    try:
        with pytest.raises(ValueError, match="cannot be imported"): get_simulator("ghost")
    finally: SIMULATORS.pop("ghost")


def test_cli_imagine_on_a_synthetic_scene_and_a_saved_sample(tmp_path, sample):
    out = tmp_path / "img.png"
    r = subprocess.run([sys.executable, "-m", "astra_wb.cli", "imagine", "move 1 meter forward", "--scene-seed", "3", "--size", "64", "48",
                        "--simulator", "reproject", "--out", str(out), "--side-by-side"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (128, 48) and "imagined from image 1 after moving 1 meter forward" in r.stdout
    save_sample(sample, tmp_path / "s")
    assert cli_imagine(["dyaw=-40", "--sample", str(tmp_path / "s"), "--reference", "3", "--out", str(tmp_path / "b.png"), "--simulator", "oracle"]) == 0
    truth = OracleSimulator().imagine(sample, [], 3, Motion("yaw", -40))
    assert np.abs(np.asarray(Image.open(tmp_path / "b.png")).astype(int) - np.asarray(truth.image)).max() <= 1
    assert cli_imagine(["turn_left 30", "--sample", str(tmp_path / "s"), "--reference", "7", "--simulator", "oracle", "--out", str(tmp_path / "c.png")]) == 2


def test_reproject_on_a_scannet_style_scan(tmp_path):
    "The real-scan path: a scan folder (JPEG colour, mm depth) loaded into a sample and warped, checked against the oracle."
    from astra_wb.scene import load_scan, write_scan
    from astra_wb.simulators import frames_to_sample
    scene = make_scene(6)
    K = intrinsics(96, 72, 60)
    write_scan([render(scene, P, K, 96, 72) for P in sample_cameras(scene, 3, rng=5)], tmp_path)
    scan = frames_to_sample(load_scan(tmp_path), id="scan0")
    assert scan.depths[0].dtype == np.float32 and len(scan.images) == 3
    obs = ReprojectSimulator().imagine(scan, [], 2, Motion("lateral", 0.4))
    truth = render(scene, obs.pose, K, 96, 72).rgb
    seen = ~obs.mask
    assert seen.mean() > 0.7 and (np.abs(np.asarray(obs.image).astype(int) - truth).max(-1)[seen] < 40).mean() > 0.9
    assert obs.meta["views_used"] == [2, 1, 3]
    # dropout needs a backend that can leave objects out; around reproject nothing is claimed dropped
    p = PerturbedSimulator(ReprojectSimulator(), dropout=1.0).imagine(scan, [], 1, Motion("yaw", 10))
    assert p.meta["dropped"] == []


def test_user_errors_name_the_spec_or_motion():
    from astra_wb.simulators import get_simulator, parse_motion_arg
    from astra_wb.motion import MotionError
    with pytest.raises(ValueError, match=r"simulator spec 'perturbed\(oracle,pose_noise=abc\)': .*'abc'"):
        get_simulator("perturbed(oracle,pose_noise=abc)")
    with pytest.raises(MotionError, match=r"motion 'fly 3': .*turn_right 30"):
        parse_motion_arg("fly 3")
    assert parse_motion_arg("turn_right 30") == Motion("yaw", 30)
