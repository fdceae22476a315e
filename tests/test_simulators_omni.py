"""The vllm-omni client against a stub that enforces the real vLLM-Omni / Bagel server's rules (a separate process
on 127.0.0.1): the canvas limit, the two-stage first-image rule, the image limit, seeds, extra_body, pipeline errors,
retries, templates; and a benchmark-sized call recorded in a saved trajectory."""
import json, os, subprocess, sys, urllib.error, urllib.request
import numpy as np
import pytest

from astra_wb.motion import Motion
from astra_wb.scene import make_scene
from astra_wb.backends import OracleSimulator
from astra_wb.simulators import SimulatorError, check_simulator, get_simulator, scene_sample
from astra_wb.vllm_omni import VllmOmniSimulator, image_data_url
from test_simulators import start_stub, stop


@pytest.fixture
def stub():
    procs = []
    def start(*args):
        proc, url = start_stub(*args); procs.append(proc); return url
    yield start
    for p in procs: stop(p)


@pytest.fixture(scope="module")
def sample():
    return scene_sample(make_scene(8), width=80, height=64, n_views=3, seed=1)


@pytest.fixture(scope="module")
def photo():
    "A benchmark-sized sample: four 1296x968 views (a reference and three context images)."
    return scene_sample(make_scene(8), width=1296, height=968, n_views=4, seed=1)


def _stats(url):
    with urllib.request.urlopen(url + "/stats", timeout=5) as r: return json.loads(r.read())


def _post(url, body):
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r: return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read())


def _request(images, text="Turn 10 degrees to the left.", **top):
    parts = [{"type": "image_url", "image_url": {"url": image_data_url(im)}} for im in images]
    return {"messages": [{"role": "user", "content": parts + [{"type": "text", "text": text}]}], **top}


# --- the server's rules, each against today's client ---

def test_benchmark_photo_is_not_sent_with_its_own_size(photo, stub):
    url = stub()
    obs = VllmOmniSimulator(url).imagine(photo, [], 1, Motion("yaw", -20))      # the default client
    assert obs.image.size == (1296, 968)
    assert (obs.meta["reference_size"], obs.meta["requested_size"], obs.meta["returned_size"]) == ([1296, 968], None, [1024, 768])
    assert _stats(url)["last"]["size"] == [1024, 768]          # sized by the server from the input image
    obs = VllmOmniSimulator(url, size="reference").imagine(photo, [], 1, Motion("yaw", -20))
    assert obs.meta["requested_size"] == [1024, 752] and _stats(url)["last"]["size"] == [1024, 752]


def test_the_stub_rejects_sides_over_the_checkpoint_limit(sample, stub):
    url = stub()
    code, body = _post(url, _request(sample.images[:1], modalities=["image"], extra_body={"width": 1296, "height": 968}))
    assert code == 400 and "exceeds the BAGEL checkpoint limit of 1024" in body["error"]["message"]
    code, _ = _post(url, _request(sample.images[:1], modalities=["image"], extra_body={"width": 1000, "height": 500}))
    assert code == 200 and _stats(url)["last"]["size"] == [992, 496]          # floored to multiples of 16


def test_two_stage_uses_the_first_image_only_and_the_meta_says_so(sample, stub):
    url = stub()                                                      # vLLM-Omni's default deployment
    obs = VllmOmniSimulator(url).imagine(sample, [], 2, Motion("yaw", 20))
    assert obs.meta["images_used"] == [2] and obs.meta["context_images"] == [2] and obs.meta["deployment"] == "two-stage"
    assert _stats(url)["last"]["images_received"] == 1                # nothing is sent that the server would drop
    _post(url, _request(sample.images, modalities=["image"]))
    assert _stats(url)["last"] | {} and _stats(url)["last"]["images_used"] == 1   # the stub drops the rest, like the server


def test_single_stage_sends_context_images_up_to_the_server_limit(sample, stub):
    url = stub("--deployment", "single-stage")
    code, body = _post(url, _request(sample.images * 2, modalities=["image"]))
    assert code == 400 and body["error"]["message"] == "At most 4 image(s) may be provided in one prompt."
    six = scene_sample(make_scene(8), width=80, height=64, n_views=6, seed=1)
    obs = VllmOmniSimulator(url + "?deployment=single-stage&max_context=6").imagine(six, [], 1, Motion("yaw", 20))
    assert obs.meta["images_used"] == [1, 2, 3, 4] and _stats(url)["last"]["images_used"] == 4


def test_seed_reaches_the_image_stage_only_where_the_server_honours_it(sample, stub):
    url = stub()
    a, b = (VllmOmniSimulator(url, seed=s).imagine(sample, [], 1, Motion("yaw", 20)) for s in (1, 2))
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))  # two-stage chat: the stage seed (52) is used
    assert a.meta["seed_honoured"] is False and _stats(url)["last"]["seed"] == 52
    c, d = (VllmOmniSimulator(url, seed=s, route="images").imagine(sample, [], 1, Motion("yaw", 20)) for s in (1, 2))
    assert not np.array_equal(np.asarray(c.image), np.asarray(d.image)) and c.meta["seed_honoured"] is True
    assert _stats(url)["last"]["seed"] == 2 and c.meta["route"] == "images"


def test_generation_settings_reach_the_server_from_extra_body(sample, stub):
    url = stub()
    VllmOmniSimulator(url).imagine(sample, [], 1, Motion("yaw", 20))
    assert _stats(url)["last"]["generation"] == {"cfg_text_scale": 4.0, "cfg_img_scale": 2.0, "cfg_interval": [0.0, 1.0],
                                                 "cfg_renorm_type": "text_channel", "cfg_renorm_min": 0.0, "timestep_shift": 3.0}
    sim = get_simulator(f"vllm-omni:{url}?cfg_img_scale=1.8&guidance=server")
    obs = sim.imagine(sample, [], 1, Motion("yaw", 20))
    assert _stats(url)["last"]["generation"] == {"cfg_img_scale": 1.8} and obs.meta["generation"]["cfg_img_scale"] == 1.8
    # the server reads extra_body when there is one and then ignores the top level (a raw request, not the openai client)
    code, _ = _post(url, _request(sample.images[:1], modalities=["image"], width=4096, extra_body={"width": 512}))
    assert code == 200 and _stats(url)["last"]["size"][0] == 512


def test_pipeline_errors_are_not_retried_and_say_what_the_server_said(sample, stub):
    url = stub("--pipeline-error")
    with pytest.raises(SimulatorError) as e: VllmOmniSimulator(url, retries=3, backoff=0.01).imagine(sample, [], 1, Motion("yaw", 20))
    assert "HTTP 500: Image generation failed: CUDA out of memory" in str(e.value) and e.value.reason == "backend"
    assert _stats(url)["requests"] == 1


def test_busy_server_is_retried_after_its_retry_after(sample, stub):
    url = stub("--fail-first", "2", "--retry-after", "0.3")
    sim, waits = VllmOmniSimulator(url, retries=3, backoff=0.01), []
    sim._sleep = waits.append                                        # record the waits instead of timing them
    obs = sim.imagine(sample, [], 1, Motion("yaw", 20))
    assert waits == [0.3, 0.3] and obs.meta["attempts"] == 3 and _stats(url)["requests"] == 3


def test_default_modalities_give_text_and_the_client_says_why(sample, stub):
    url = stub()
    code, body = _post(url, _request(sample.images[:1]))             # no modalities: the engine's default (text)
    assert code == 200 and isinstance(body["choices"][0]["message"]["content"], str)
    url2 = stub("--no-image")
    with pytest.raises(SimulatorError, match="no image data URL.*modalities") as e: VllmOmniSimulator(url2).imagine(sample, [], 1, Motion("yaw", 5))
    assert e.value.reason == "backend"


def test_astra_template_puts_the_reference_last(sample, stub):
    url = stub("--deployment", "single-stage")
    obs = VllmOmniSimulator(url, deployment="single-stage", template="astra").imagine(sample, [], 1, Motion("yaw", 20))
    assert obs.meta["image_order"] == [2, 3, 1] and obs.meta["template"] == "astra"
    assert obs.meta["instruction"] == "Based on the last image, turn 20 degrees to the right."
    # the stub imagines from the last image, as the instruction says: close to the truth from image 1
    truth = np.asarray(OracleSimulator().imagine(sample, [], 1, Motion("yaw", 20)).image).astype(int)
    img, ref = np.asarray(obs.image).astype(int), np.asarray(sample.images[0]).astype(int)
    seen = ~(np.abs(img - (255, 0, 255)) < 40).all(-1)     # holes are magenta (blurred by the resize back)
    close = lambda a: (np.abs(a - truth).max(-1)[seen] < 40).mean()
    assert close(img) > 0.8 and close(img) > close(ref) + 0.2


# --- the whole path: a benchmark photo with three context images, recorded in a saved trajectory ---

@pytest.mark.parametrize("route", ["chat", "images"])
def test_benchmark_call_with_context_is_recorded_in_the_trajectory(photo, stub, tmp_path, route):
    from astra_wb.agent import AgentConfig, rollout
    from astra_wb.policies import ScriptedPolicy
    from astra_wb.protocol import load_trajectory, render_answer, render_tool_call, Invoke, save_trajectory
    url = stub("--deployment", "single-stage")
    sim = get_simulator(f"vllm-omni:{url}?deployment=single-stage&max_context=4&template=astra&seed=3&route={route}")
    pol = ScriptedPolicy([render_tool_call(Invoke(1, Motion("yaw", -30)), "Look left."), render_answer("A", "Done.")])
    traj = rollout([photo], pol, sim, AgentConfig(max_new_tokens=64))[0]
    folder = save_trajectory(traj, tmp_path / "t")
    meta = load_trajectory(folder).observations[0].meta
    assert (meta["reference_size"], meta["requested_size"], meta["returned_size"]) == ([1296, 968], None, [1024, 768])
    assert meta["images_used"] == meta["image_order"] == [2, 3, 4, 1]
    assert (meta["seed"], meta["seed_honoured"], meta["template"], meta["deployment"], meta["route"]) == (3, True, "astra", "single-stage", route)
    assert _stats(url)["last"]["images_used"] == 4 and _stats(url)["last"]["seed"] == 3


# --- client behaviour that does not depend on the server's rules ---

def test_retries_connection_failures_then_names_the_error(sample):
    sim, waits = VllmOmniSimulator("http://127.0.0.1:9", retries=2, backoff=0.1), []
    sim._sleep = waits.append
    with pytest.raises(SimulatorError, match="after 3 attempt") as e: sim.imagine(sample, [], 1, Motion("yaw", 20))
    assert waits == [0.1, 0.2] and e.value.reason == "backend"


def test_timeout_is_not_retried(sample, stub):
    url = stub("--delay", "3")
    with pytest.raises(SimulatorError) as e: VllmOmniSimulator(url, retries=2, backoff=0.01, timeout=0.5).imagine(sample, [], 1, Motion("yaw", 20))
    assert e.value.reason == "timeout" and "timeout 0.5 s" in str(e.value)


def test_client_errors_are_not_retried(sample, stub):
    url = stub()
    with pytest.raises(SimulatorError, match="HTTP 404"): VllmOmniSimulator(url + "/v2", retries=3, backoff=0.5).imagine(sample, [], 1, Motion("yaw", 5))
    assert _stats(url)["requests"] == 1


def test_typed_errors_without_touching_the_server(sample):
    sim = get_simulator("vllm-omni:http://127.0.0.1:9")       # nothing listens there; validation comes first
    for ref, motion, reason in [(4, Motion("yaw", 5), "out_of_range"), (1, Motion("pitch", 95), "out_of_bounds")]:
        with pytest.raises(SimulatorError) as e: sim.imagine(sample, [], ref, motion)
        assert e.value.reason == reason
    with pytest.raises(ValueError, match="http"): VllmOmniSimulator("localhost:8091")


def test_conformance_and_size_option(sample, stub):
    url = stub()
    obs = check_simulator(VllmOmniSimulator(url, size="40x36", steps=4, seed=1), sample)   # floored to 32x32; resized back
    assert obs.meta["requested_size"] == [32, 32] and obs.meta["returned_size"] == [32, 32]
