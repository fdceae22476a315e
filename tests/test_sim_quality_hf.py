"""sim_quality through transformers: GroundingDINO and OWL-ViT detectors and the paper's
monocular-depth pose method, each with a tiny random model built here from a config (no weights)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from astra_wb.geometry import apply_motion, decompose, intrinsics
from astra_wb.sim_quality import (POSE_FAILURES, DepthAlignPose, Detection, Detector, HFDetector, QualityConfig,
                                  score_simulators)
from astra_wb.wm_data import WMDataConfig, synthetic_sets
from astra_wb.depth import build_tiny_depth_model

pytest.importorskip("transformers")
CATEGORIES = ["chair", "table", "sofa"]


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs: bs.append(b); cs.append(256 + n); n += 1
    return [chr(c) for c in cs]


def build_tiny_owlvit(folder: Path) -> str:
    "A random 1-layer OWL-ViT with a character-level CLIP tokenizer."
    from transformers import CLIPTokenizer, OwlViTConfig, OwlViTForObjectDetection, OwlViTProcessor
    from transformers.models.owlvit.image_processing_pil_owlvit import OwlViTImageProcessorPil
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab)); (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="!", model_max_length=16)
    proc = OwlViTProcessor(image_processor=OwlViTImageProcessorPil(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64}),
                           tokenizer=tok)
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=64, patch_size=16)
    model = OwlViTForObjectDetection(OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32))
    import torch
    with torch.no_grad():   # random box-head outputs saturate the sigmoid into zero-width boxes; keep them near the anchors
        model.box_head.dense2.weight.mul_(0.01); model.box_head.dense2.bias.zero_()
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return str(folder)


def build_tiny_grounding_dino(folder: Path) -> str:
    "A random GroundingDINO (tiny Swin backbone, 1-layer BERT) with a character-level WordPiece vocabulary."
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoProcessor, SwinConfig)
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil
    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + list(letters) + ["##" + c for c in letters]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    proc = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}),
                                  tokenizer=BertTokenizer(str(folder / "vocab.txt")))
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4,
                          out_features=["stage1", "stage2"])
    text = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                      max_position_embeddings=64)
    cfg = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
                              encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
                              num_queries=10, num_feature_levels=2, encoder_n_points=2, decoder_n_points=2, max_text_len=32)
    GroundingDinoForObjectDetection(cfg).save_pretrained(folder)
    proc.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"owlvit": build_tiny_owlvit(root / "owlvit"), "grounding-dino": build_tiny_grounding_dino(root / "gdino"),
            "depth": build_tiny_depth_model(root / "depth", "relative", max_depth=None)}


@pytest.fixture(scope="module")
def samples():
    from astra_wb.scene import make_scene
    return synthetic_sets(make_scene(5), 2, WMDataConfig(image_size=128), np.random.default_rng(0))


@pytest.mark.parametrize("kind", ["owlvit", "grounding-dino"])
def test_hf_detector_returns_boxes_in_the_image_with_given_categories(models, kind):
    det = HFDetector(models[kind], threshold=0.0, text_threshold=0.0)
    assert isinstance(det, Detector)
    image = Image.fromarray((np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8))
    found = det.detect(image, CATEGORIES)
    assert found and all(isinstance(d, Detection) for d in found)
    assert {d.category for d in found} <= set(CATEGORIES)
    for d in found:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 <= x1 <= 120 and 0 <= y0 <= y1 <= 90 and 0 <= d.score <= 1
    for nothing in ([], None):                               # an open-vocabulary detector asked for nothing is a setup error
        with pytest.raises(ValueError, match="no categories"):
            det.detect(image, nothing)
    assert HFDetector(models[kind], threshold=1.01).detect(image, CATEGORIES) == []


def test_hf_detector_drives_a_quality_run(models, samples):
    from astra_wb.simulators import get_simulator
    cfg = QualityConfig(categories=CATEGORIES)
    summaries, rows = score_simulators({"oracle": get_simulator("oracle")}, samples, detector=HFDetector(models["owlvit"], threshold=0.5), cfg=cfg)
    for r in rows["oracle"]:
        assert all(v is None or 0 <= v <= 1 for v in (r["precision"], r["recall"]))
    # the oracle renders the target exactly, so any deterministic detector agrees with itself
    assert any(r["n_target"] for r in rows["oracle"])
    assert summaries[0]["precision"] == 1.0 and summaries[0]["recall"] == 1.0


def test_depth_alignment_with_a_tiny_random_depth_model(models, samples):
    s = samples[0]
    src = s.contexts[s.source_index]
    est = DepthAlignPose(models["depth"], kind="relative")
    r = est.estimate(src, Image.fromarray(s.target.rgb))
    assert r.reason == "ok" or r.reason in POSE_FAILURES      # random weights: a pose or a named failure, never a crash
    if r.pose is not None: assert r.pose.shape == (4, 4) and np.isfinite(r.pose).all()
    from astra_wb.simulators import get_simulator
    summaries, rows = score_simulators({"oracle": get_simulator("oracle")}, samples, estimator=est, cfg=QualityConfig(verify_pose=False))
    assert {r["pose_reason"] for r in rows["oracle"]} <= set(POSE_FAILURES) | {"ok", "moved_dx", "moved_dy", "moved_dz", "moved_dyaw",
                                                                                   "moved_dpitch", "wrong_direction", "magnitude"}


def test_depth_alignment_recovers_the_pose_with_true_depth():
    from astra_wb.scene import make_scene, render, sample_cameras
    scene, K = make_scene(1), intrinsics(256, 256, 60)
    src = render(scene, sample_cameras(scene, 1, 0)[0], K, 256, 256)
    for kind, value in (("yaw", 20), ("vertical", 0.4)):
        gen = render(scene, apply_motion(src.pose, kind, value), K, 256, 256)
        r = DepthAlignPose(lambda im: gen.depth * 3.0).estimate(src, gen.rgb)   # right up to an unknown scale
        assert r.reason == "ok", kind
        err = np.abs(decompose(src.pose, r.pose) - decompose(src.pose, gen.pose))
        assert np.all(err <= [0.1, 0.1, 0.1, 1.5, 1.5]), (kind, err)


def test_cli_with_depth_pose_method_and_hf_detector(models, tmp_path, capsys):
    from astra_wb.sim_quality import cli_sim_quality
    out = tmp_path / "r.json"
    argv = ["--test-set", str(tmp_path / "ts"), "--per-source", "3", "--image-size", "128", "--no-progress", "--json", str(out),
            "--protocol", "paper", "--depth-model", f"{models['depth']}:relative", "--detector", f"hf:{models['grounding-dino']}",
            "--categories", "chair,table"]
    assert cli_sim_quality(argv) == 0                        # tiny random depth model: the plumbing, not a measurement
    report = json.loads(out.read_text())
    rows = report["rows"]["oracle"]
    assert len(rows) == 3 and all(r["pose_reason"] for r in rows)
    assert report["summaries"][0]["protocol"] == "paper" and report["summaries"][0]["n_pose"] == 3   # all samples
    assert "pose protocol: paper" in capsys.readouterr().out
    assert cli_sim_quality(argv[:-6] + ["--depth-model", str(tmp_path / "no-model")]) == 2
    assert "no-model" in capsys.readouterr().out
