"""The learned world simulator and its training: the simulator contract through the registry, a few training
steps at tiny size that lower the held-out loss, the CLI end to end (train, resume, export), and the Bagel
export read back in the layout Bagel's edit reader expects."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from astra_wb.learned_sim import LearnedSim, LearnedSimConfig
from astra_wb.motion import Motion
from astra_wb.scene import make_scene
from astra_wb.simulators import SimulatorError, check_simulator, get_simulator, scene_sample
from astra_wb.tune_wm import (STAGES, TuneConfig, build_examples, cli_tune_wm, export_bagel, tune_wm, val_metrics)
from astra_wb.wm_data import WMDataConfig, make_wm_data, read_wm_data
from test_privilege import GuardedMeta   # the one raising guard on meta["scene"]

TINY = LearnedSimConfig(base=4, levels=2)


@pytest.fixture(scope="module")
def wm(tmp_path_factory):
    out = tmp_path_factory.mktemp("wm")
    make_wm_data(out, n_synthetic=4, per_scene=3, cfg=WMDataConfig(image_size=64), progress=False)
    return out


@pytest.fixture(scope="module")
def run(wm, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    tune_wm(wm, out, TuneConfig(size=32, pretrain_steps=4, tune_steps=4, batch_size=4, heldout=0.3, eval_every=2), TINY,
            progress=False)
    return out


def test_registry_contract(run):
    for stage in STAGES:
        sim = get_simulator(f"learned:{run / stage}")
        obs = check_simulator(sim)
        assert obs.simulator == f"learned:{run / stage}" and obs.depth is not None


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a learned-simulator checkpoint"):
        get_simulator(f"learned:{tmp_path / 'nothing'}")


def test_unposed_reference_without_depth_needs_a_depth_model(run):
    s = scene_sample(make_scene(1), width=64, height=48, n_views=2)
    from dataclasses import replace
    bare = replace(s, poses=None, depths=None)
    with pytest.raises(SimulatorError) as e:
        get_simulator(f"learned:{run / 'tuned'}").imagine(bare, [], 1, Motion("yaw", 20))
    assert e.value.reason == "missing_context"


def test_imagined_view_does_not_read_the_scene(run):
    "The same call with and without meta['scene'] gives the same image (only the privileged oracle may read it)."
    from dataclasses import replace
    s = scene_sample(make_scene(2), width=64, height=48, n_views=2)
    sim = get_simulator(f"learned:{run / 'tuned'}")
    a = sim.imagine(s, [], 2, Motion("forward", 0.5)).image
    b = sim.imagine(replace(s, meta={"source": "synth"}), [], 2, Motion("forward", 0.5)).image
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_training_lowers_the_loss(wm):
    """80 steps at tiny size: the image L1 on the tuning examples falls well below the untrained model's (the
    held-out curves of a real run are in the tune_wm notebook)."""
    from astra_wb.tune_wm import losses
    samples = read_wm_data(wm)
    ex = build_examples(samples, TuneConfig(size=32, batch_size=4), TINY, "tuned")
    torch.manual_seed(0)
    model = LearnedSim(TINY)
    before = val_metrics(model, ex)["l1"]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(80):
        img, warp, _ = losses(model, ex, torch.from_numpy(rng.integers(len(ex), size=4)))
        opt.zero_grad(); (img + warp).backward(); opt.step()
    after = val_metrics(model, ex)["l1"]
    print(f"val L1 {before:.4f} -> {after:.4f} ({after / before:.2f}x)")
    assert after < 0.8 * before


def test_checkpoints_record_their_data(run, wm):
    pre, tuned = (LearnedSim.from_pretrained(run / s).record for s in STAGES)
    assert (pre["stage"], tuned["stage"]) == STAGES
    shards = sorted(p.name for p in (wm / "data").glob("*.parquet"))
    assert sorted(tuned["shards"]) == shards and tuned["data"] == str(wm)
    assert set(tuned["train_scenes"]).isdisjoint(tuned["heldout_scenes"])
    assert pre["examples"] > tuned["examples"]          # generic pairs outnumber the verified samples
    log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in log] == [("pretrained", 2), ("pretrained", 4), ("tuned", 2), ("tuned", 4)]


def test_cli_train_resumes_and_refuses_another_config(wm, tmp_path, capsys):
    args = ["train", str(wm), str(tmp_path / "r"), "--size", "32", "--pretrain-steps", "2", "--tune-steps", "2",
            "--batch-size", "2", "--heldout", "0.3", "--no-progress"]
    assert cli_tune_wm(args) == 0
    first = (tmp_path / "r/tuned/model.safetensors").read_bytes()
    assert cli_tune_wm(args) == 0                          # finished stages are not trained again
    assert (tmp_path / "r/tuned/model.safetensors").read_bytes() == first
    capsys.readouterr()
    assert cli_tune_wm(args[:-1] + ["--tune-steps", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "another config" in err and "Traceback" not in err


def test_cli_bad_data_folder_is_one_line(tmp_path, capsys):
    assert cli_tune_wm(["train", str(tmp_path / "none"), str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("astra-wb tune-wm: error:") and len(err.splitlines()) == 1


def test_bagel_export_reads_like_bagels_edit_reader(wm, tmp_path):
    "Read the export as Bagel's unified_edit reader does: parquet_info -> row groups -> image_list / instruction_list."
    import pyarrow.parquet as pq
    entry = export_bagel(wm, tmp_path / "bagel")["unified_edit"]["astra_wm"]
    assert json.loads((tmp_path / "bagel/dataset_info.json").read_text())["unified_edit"]["astra_wm"] == entry
    info = json.loads(Path(entry["parquet_info_path"]).read_text())
    assert len(info) == entry["num_files"] and all(Path(p).parent == Path(entry["data_dir"]) for p in info)
    by_id = {s.sample_id: s for s in read_wm_data(wm)}
    n = 0
    for path, meta in info.items():
        f = pq.ParquetFile(path)
        for rg in range(meta["num_row_groups"]):
            df = f.read_row_group(rg).to_pandas()
            for _, row in df.iterrows():
                s = by_id[row["id"]]
                assert len(row["image_list"]) == 2 and len(row["instruction_list"]) == len(row["image_list"]) - 1
                src = np.asarray(Image.open(io.BytesIO(row["image_list"][0])).convert("RGB"))
                tgt = np.asarray(Image.open(io.BytesIO(row["image_list"][1])).convert("RGB"))
                assert np.array_equal(src, s.contexts[s.source_index].rgb) and np.array_equal(tgt, s.target.rgb)
                assert list(row["instruction_list"][0]) == [s.motion.instruction().capitalize() + "."]
                assert len(row["context_images"]) == len(s.contexts)
                n += 1
    assert n == entry["num_total_samples"] == len(by_id)


def test_bagel_export_of_an_empty_folder_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no wm_data shards"):
        export_bagel(tmp_path, tmp_path / "out")


def test_learned_simulator_never_reads_the_scene_and_is_not_privileged(run):
    s = scene_sample(make_scene(3), width=64, height=48, n_views=3)
    s.meta = GuardedMeta(s.meta)
    sim = get_simulator(f"learned:{run / 'tuned'}")
    assert not getattr(sim, "privileged", False)
    obs = sim.imagine(s, [], 1, Motion("yaw", -40))
    sim.imagine(s, [obs], 4, Motion("forward", 0.5))                 # chaining too
    with pytest.raises(AssertionError, match="scene"):                 # the guard itself works
        get_simulator("oracle").imagine(s, [], 1, Motion("yaw", -40))


def test_generic_pairs_carry_no_camera_information(wm):
    """Stage 1 ("unposed", the default) is a generic generator's data: the motion input is zero whatever the pair;
    "posed" pairs (the control) carry the relative motion. The target camera is never an input."""
    from astra_wb.tune_wm import pair_examples
    s = read_wm_data(wm)[0]
    for e in pair_examples(s, 32, 4, np.random.default_rng(0), TINY):
        assert float(e[-1].abs().max()) == 0.0 and len(e[0]) == 1           # one view in, no motion
    posed = pair_examples(s, 32, 4, np.random.default_rng(0), TINY, posed=True)
    assert max(float(e[-1].abs().max()) for e in posed) > 0.05
    assert TuneConfig().generic == "unposed"


def test_full_resolution_refinement_starts_neutral_and_can_veto_pixels():
    "A fresh refinement leaves the coarse result; its logits act per full-resolution pixel (one stripe can be vetoed)."
    from astra_wb.learned_sim import FullResRefine, compose
    torch.manual_seed(0)
    out, x = torch.randn(1, 4, 12, 16), torch.full((1, 16, 12, 16), 0.3)
    x[:, 3] = 1.0                                                      # the thumbnail: all seen
    warp, valid = torch.full((1, 3, 48, 64), 0.3), torch.ones(1, 1, 48, 64)
    r = FullResRefine(8)
    assert torch.allclose(compose(out, warp, valid, r, x), compose(out, warp, valid), atol=1e-6)
    warp[:, :, 20, :] = 1.0                                             # a one-pixel stripe of white on grey
    with torch.no_grad():                                               # a hand-set rule: veto where the contrast is high
        r.net[0].weight.zero_(); r.net[0].bias.zero_(); r.net[0].weight[0, 4:7, 0, 0] = 1.0; r.net[0].bias[0] = -1.2
        r.net[2].weight[3, 0, 0, 0] = -50.0
    img, plain = compose(out, warp, valid, r, x), compose(out, warp, valid)
    assert (img[:, :, 20] - warp[:, :, 20]).abs().min() > 0.01          # the stripe row is repainted ...
    assert torch.allclose(img[:, :, 30], plain[:, :, 30], atol=1e-6)     # ... rows without contrast are untouched


def test_checkpoint_of_the_earlier_design_is_refused_clearly(tmp_path):
    "Checkpoints of the earlier design (fixed warp to the requested camera, no motion encoder) give one clear error."
    torch.manual_seed(0)
    LearnedSim(TINY).save_pretrained(tmp_path / "old")
    meta = json.loads((tmp_path / "old/config.json").read_text())
    del meta["model"]["design"]
    (tmp_path / "old/config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="earlier|design 1") as e:
        get_simulator(f"learned:{tmp_path / 'old'}")
    assert "tune-wm train" in str(e.value) and len(str(e.value).splitlines()) == 1


def _encoder_error(model, ex):
    m = val_metrics(model, ex)
    return m["trans_err"], m["rot_err"], m["identity_trans_err"], m["identity_rot_err"]


def test_tuning_teaches_the_encoder_what_a_motion_means(tmp_path):
    """View consistency is learned, not wired in. A model pre-trained on unposed pairs (motion input zero) picks the
    same camera whatever motion is asked (so it is as far from the true camera as performing no motion); tuning
    steps whose only loss is pixels cut the encoder's error against the true relative pose, which is measured
    here and never seen by training. (The earlier design warped to the requested camera: nothing to learn.)"""
    from astra_wb.learned_sim import transform_error, true_transform
    from astra_wb.tune_wm import losses
    make_wm_data(tmp_path, n_synthetic=6, per_scene=6, cfg=WMDataConfig(image_size=64), progress=False)
    samples = read_wm_data(tmp_path)
    cfg = TuneConfig(size=32, batch_size=6)
    pairs, ex = (build_examples(samples, cfg, TINY, stage) for stage in STAGES)
    torch.manual_seed(0)
    model = LearnedSim(TINY)
    rng = np.random.default_rng(0)

    def steps(data, n):
        opt = torch.optim.Adam([{"params": model.encoder.parameters(), "lr": 1e-2},
                                {"params": [p for k, p in model.named_parameters() if not k.startswith("encoder.")],
                                 "lr": 2e-3}])
        for _ in range(n):
            img, warp, _ = losses(model, data, torch.from_numpy(rng.integers(len(data), size=cfg.batch_size)))
            opt.zero_grad(); (img + warp).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip); opt.step()

    steps(pairs, 20)                                               # generic pre-training: no motion ever given
    t, r, t0, r0 = _encoder_error(model, ex)
    with torch.no_grad():                                          # the camera it picks whatever is asked ...
        ref, motion = ex.pose[:, 0].float(), ex.motion.float()
        asked, nothing = (true_transform(ref, model.pose(ref, m)) for m in (motion, torch.zeros_like(motion)))
        dt, dr = transform_error(asked, nothing)
    print(f"untuned: {t:.3f} m / {r:.2f} deg (identity {t0:.3f} m / {r0:.2f} deg); "
          f"asked vs no motion differ by {float(dt.mean()):.3f} m / {float(dr.mean()):.2f} deg")
    assert float(dt.mean()) < 0.1 * t0 and float(dr.mean()) < 0.1 * r0         # ... is the one it picks for none
    assert t > 0.9 * t0 and r > 0.9 * r0                                         # so it is as far off as no motion
    steps(ex, 150)                                                 # view-consistency tuning: pixels only
    t1, r1, *_ = _encoder_error(model, ex)
    print(f"tuned:   {t1:.3f} m / {r1:.2f} deg")
    assert t1 < 0.85 * t0 and r1 < 0.7 * r0


def test_fill_test_set_stays_below_the_coverage_threshold(tmp_path):
    "The Table-2 test set is built with a coverage window below the SFT threshold, where the warp leaves holes."
    from astra_wb.tune_wm import FILL_COVERAGE
    cfg = WMDataConfig(image_size=64, min_coverage=FILL_COVERAGE[0], max_coverage=FILL_COVERAGE[1])
    make_wm_data(tmp_path / "t", n_synthetic=3, per_scene=3, cfg=cfg, progress=False)
    cov = [s.coverage for s in read_wm_data(tmp_path / "t")]
    assert cov and all(FILL_COVERAGE[0] <= c <= FILL_COVERAGE[1] < WMDataConfig().min_coverage for c in cov)


def test_table2_rows_have_a_floor_and_the_control_when_present(run, tmp_path):
    "Table 2 always carries the copy floor, reproject and the (privileged) oracle; the control row only when the run has it."
    import shutil
    from astra_wb.tune_wm import CONTROL, table2_simulators
    names = list(table2_simulators(run))
    assert names[:2] == ["learned untuned (generic)", "learned tuned"] and "copy (floor)" in names
    assert "reproject" in names and "oracle (privileged)" in names and not any("control" in n for n in names)
    shutil.copytree(run / "pretrained", tmp_path / "r" / "pretrained")
    shutil.copytree(run / "tuned", tmp_path / "r" / "tuned")
    shutil.copytree(run / "pretrained", tmp_path / "r" / CONTROL)
    assert "control: posed-pair pre-training" in table2_simulators(tmp_path / "r")


def _randomised_checkpoint(folder, cfg: LearnedSimConfig, seed: int) -> str:
    "A checkpoint whose every weight is random (the zero-initialised encoder outputs and refinement included)."
    torch.manual_seed(seed)
    m = LearnedSim(cfg)
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.3)
    return str(m.save_pretrained(folder))


@pytest.mark.parametrize("cfg", [LearnedSimConfig(), LearnedSimConfig(base=4, levels=2, refine=0, net_width=40)])
def test_fast_inference_draws_the_straightforward_image(cfg, tmp_path):
    """`render_fast` (what `imagine` runs) against `render_reference` through the registry: the same bytes within one
    unit of rounding, the same depth, holes and meta; posed with context views, and an unposed reference."""
    from dataclasses import replace
    spec = f"learned:{_randomised_checkpoint(tmp_path / 'm', cfg, seed=cfg.base)}"
    fast, slow = get_simulator(spec), get_simulator(spec)
    slow.fast = False
    motions = [Motion("yaw", 30), Motion("forward", 0.8), Motion("lateral", -0.5), Motion("pitch", -15), Motion("yaw", -120)]
    for i, motion in enumerate(motions):
        s = scene_sample(make_scene(i), width=(256, 96)[i % 2], height=(192, 64)[i % 2], n_views=3, seed=i)
        if i == 4: s = replace(s, poses=None)                   # an unposed reference: its own world frame
        a, b = fast.imagine(s, [], 1 + i % 3, motion), slow.imagine(s, [], 1 + i % 3, motion)
        d = np.abs(np.asarray(a.image, int) - np.asarray(b.image, int))
        assert d.max() <= 1 and (d == 0).mean() > 0.99, (motion, d.max(), (d == 0).mean())
        assert np.array_equal(a.depth, b.depth) and a.meta == b.meta
