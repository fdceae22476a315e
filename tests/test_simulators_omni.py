"""The vllm-omni client against a real HTTP server (the stub, as a separate process on 127.0.0.1): the request on
the wire, retries with backoff, timeouts, and clear errors."""
import json, time, urllib.error, urllib.request
import numpy as np
import pytest

from astra_wb.motion import Motion
from astra_wb.scene import make_scene
from astra_wb.simulators import OracleSimulator, SimulatorError, check_simulator, get_simulator, scene_sample
from astra_wb.vllm_omni import VllmOmniSimulator
from test_simulators import start_stub, stop


@pytest.fixture(scope="module")
def sample():
    return scene_sample(make_scene(8), width=80, height=64, n_views=2, seed=1)


def _stats(url):
    with urllib.request.urlopen(url + "/stats", timeout=5) as r: return json.loads(r.read())


def test_retries_after_server_errors_then_succeeds(sample):
    proc, url = start_stub("--fail-first", "2")
    try:
        t0 = time.perf_counter()
        obs = VllmOmniSimulator(url, retries=3, backoff=0.2, timeout=10).imagine(sample, [], 1, Motion("yaw", 20))
        assert time.perf_counter() - t0 >= 0.2 + 0.4 - 0.05             # backoff 0.2 s then 0.4 s
        assert _stats(url)["requests"] == 3
        assert obs.image.size == (80, 64) and obs.index == 3 and obs.meta["context_images"] == [1, 2]
        # the stub warps the reference as a plane 3 m away (level camera, 60 degree fov): for a turn that is close to the truth,
        # and much closer than the unchanged reference
        truth = np.asarray(OracleSimulator().imagine(sample, [], 1, Motion("yaw", 20)).image).astype(int)
        img, ref = np.asarray(obs.image).astype(int), np.asarray(sample.images[0]).astype(int)
        seen = ~(img == (255, 0, 255)).all(-1)
        close = lambda a: (np.abs(a - truth).max(-1)[seen] < 40).mean()
        assert close(img) > 0.8 and close(img) > close(ref) + 0.2
    finally: stop(proc)


def test_gives_up_after_retries_with_a_clear_error(sample):
    proc, url = start_stub("--fail-first", "100")
    try:
        with pytest.raises(SimulatorError) as e: VllmOmniSimulator(url, retries=1, backoff=0.01).imagine(sample, [], 1, Motion("yaw", 20))
        assert e.value.reason == "backend" and "HTTP 503" in str(e.value) and "model is loading" in str(e.value)
        assert _stats(url)["requests"] == 2
    finally: stop(proc)


def test_timeout(sample):
    proc, url = start_stub("--delay", "3")
    try:
        t0 = time.perf_counter()
        with pytest.raises(SimulatorError) as e: VllmOmniSimulator(url, retries=1, backoff=0.01, timeout=0.5).imagine(sample, [], 1, Motion("yaw", 20))
        assert e.value.reason == "timeout" and "timeout 0.5 s" in str(e.value)
        assert time.perf_counter() - t0 < 2.5
    finally: stop(proc)


def test_client_errors_are_not_retried_and_replies_without_images_are_named(sample, tmp_path):
    proc, url = start_stub()
    try:
        with pytest.raises(SimulatorError, match="HTTP 404"): VllmOmniSimulator(url + "/v2", retries=3, backoff=0.5).imagine(sample, [], 1, Motion("yaw", 5))
        assert _stats(url)["requests"] == 1
        # the server checks the request like a real one: no modalities -> 400 with the reason
        body = VllmOmniSimulator(url).payload(sample.images[:1], "Turn 5 degrees to the left.", 80, 64)
        del body["modalities"]
        req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e: urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 400 and "modalities" in e.value.read().decode()
    finally: stop(proc)
    proc, url = start_stub("--no-image")
    try:
        with pytest.raises(SimulatorError, match="no image data URL") as e: VllmOmniSimulator(url).imagine(sample, [], 1, Motion("yaw", 5))
        assert e.value.reason == "backend"
    finally: stop(proc)


def test_typed_errors_without_touching_the_server(sample):
    sim = get_simulator("vllm-omni:http://127.0.0.1:9")       # nothing listens there; validation comes first
    for ref, motion, reason in [(3, Motion("yaw", 5), "out_of_range"), (1, Motion("pitch", 95), "out_of_bounds")]:
        with pytest.raises(SimulatorError) as e: sim.imagine(sample, [], ref, motion)
        assert e.value.reason == reason
    with pytest.raises(ValueError, match="http"): VllmOmniSimulator("localhost:8091")


def test_conformance_and_size_option(sample):
    proc, url = start_stub()
    try:
        check_simulator(VllmOmniSimulator(url, size="40x32", steps=4, seed=1), sample)   # server answers 40x32; resized back
    finally: stop(proc)
