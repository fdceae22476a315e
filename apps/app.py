"""The astra-wb Gradio workbench: Simulator, Agent, Runs and Annotate tabs.

Thin wiring: every handler validates its inputs and calls `astra_wb`; renderers live in
`astra_wb.viz`. Per-user state is in `gr.State`. Security defaults: bind 127.0.0.1, optional
auth from settings, files only under the data / runs roots (names, never paths, come from the
user), an upload size limit.
"""
import argparse, json, math, os, sys, tempfile, uuid
from dataclasses import replace
from functools import lru_cache, partial
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr
from PIL import Image

from astra_wb import viz
from astra_wb.cli import Settings, load_settings
from astra_wb.motion import TOOL_MOTION_TYPES, Motion, MotionError, parse_instruction
from astra_wb.protocol import Invoke, Sample, Trajectory, load_trajectory, render_answer, render_tool_call

MODES = ("agentic", "forced", "direct")
SIMULATORS = ("oracle", "reproject", "perturbed(oracle,pose_noise=0.2)")
POLICIES = ("expert", "human")
BENCHMARK_KINDS = ("synth", "mmsi", "mindcube", "mmsi-video")
SYNTH_BENCH_N = 12          # samples generated per seed for the "synthetic bench" source
MAX_UPLOAD_IMAGES = 8
MAX_UPLOAD_PIXELS = 40_000_000   # a small compressed file can still decode to gigabytes
CSS = ".awb-status{min-height:1.5em} #awb-imagined img{object-fit:contain}"

# ----------------------------------------------------------------------------- files and roots
class PathError(gr.Error):
    "A user-supplied name that does not lead to an existing entry inside an allowed root (shown to the user)."

def safe_path(root, name, what: str = "entry") -> Path:
    "`name` (relative) resolved inside `root`; refuses absolute paths, '..', NUL, and symlinks out of the root."
    root, name = Path(root).resolve(), "" if name is None else str(name)
    parts = Path(name).parts
    if (not name or "\x00" in name or os.path.isabs(name) or name.startswith(("~", "\\")) or ":" in name
            or any(p in ("..", ".") for p in parts) or "\\" in name):
        raise PathError(f"{what} {name!r} is not a name inside the configured root")
    from astra_wb.safeio import SafeIOError, resolve_under
    try: p = resolve_under(root, name)   # also refuses what pathlib would raise on (too long, a symlink loop)
    except SafeIOError: raise PathError(f"{what} {name!r} not found") from None
    try:
        if p.exists(): return p
    except (OSError, ValueError): pass
    raise PathError(f"{what} {name!r} not found")

def list_names(root, runs: bool = False, depth: int = 1, limit: int = 500) -> list[str]:
    "Relative names under `root` (down to `depth` levels) that stay inside it; runs: folders with trajectories or results."
    root = Path(root)
    if not root.is_dir(): return []
    real, out, level = root.resolve(), [], [root]
    for _ in range(depth):
        nxt = []
        for d in level:
            for p in sorted(d.iterdir()):
                try:
                    if p.name.startswith(".") or not p.resolve().is_relative_to(real): continue
                except (OSError, RuntimeError, ValueError): continue   # a symlink loop, a name too long: not listed
                if runs and not (p.is_dir() and ((p / "trajectories").is_dir() or (p / "results.jsonl").exists())): continue
                out.append(p.relative_to(root).as_posix())
                if p.is_dir(): nxt.append(p)
        level = nxt
    return out[:limit]

def _choice(value, allowed, what: str):
    if value not in allowed: raise gr.Error(f"unknown {what} {value!r}; expected one of {list(allowed)}")
    return value

# ----------------------------------------------------------------------------- library access (cached)
@lru_cache(maxsize=8)
def _simulator(spec: str):
    from astra_wb.simulators import get_simulator
    return get_simulator(spec)

@lru_cache(maxsize=4)
def _policy(spec: str):
    from astra_wb.policies import get_policy
    return get_policy(spec)

@lru_cache(maxsize=4)
def _synth_bench(seed: int) -> list:
    from astra_wb.synthqa import generate_bench
    return generate_bench(SYNTH_BENCH_N, seed=seed)

@lru_cache(maxsize=8)
def _benchmark(kind: str, path: str):
    from astra_wb.benchmarks import get_benchmark
    return get_benchmark(kind, path)

def synthetic_scene_sample(seed: int, n_views: int = 2, size: int = 512) -> Sample:
    "A free-exploration sample: a procedural room seen by `n_views` rendered cameras (poses and depth known)."
    from astra_wb.scene import make_scene
    from astra_wb.simulators import scene_sample
    scene = make_scene(int(seed))
    s = scene_sample(scene, width=size, height=size, fov_deg=60.0, n_views=n_views, seed=int(seed),
                     question="Free exploration: issue camera motions from any image.")
    return replace(s, id=scene.id, category="explore", meta={**s.meta, "needs_imagination": False})

def pick_sample(settings: Settings, kind: str, folder: str, seed, index) -> Sample:
    "A sample from the generated synthetic bench (`folder` empty) or a benchmark folder under the data root."
    index = int(index or 0)
    if not folder:
        bench = _synth_bench(int(seed or 0))
        return bench[index % len(bench)]
    from astra_wb.benchmarks import BenchmarkError
    path = safe_path(settings.data_root, folder, "benchmark folder")
    try:   # building a sample reads its images: refused paths and bad files are errors too
        bench = _benchmark(_choice(kind, BENCHMARK_KINDS, "benchmark"), str(path))
        files_root = getattr(bench, "image_root", None) or getattr(bench, "root", None)   # MindCube may look up two folders
        if files_root is not None and not Path(files_root).resolve().is_relative_to(Path(settings.data_root).resolve()):
            raise gr.Error(f"benchmark folder {folder!r}: its images would be read from outside the data root")
        if not len(bench): raise gr.Error(f"benchmark folder {folder!r} holds no samples")
        return bench[index % len(bench)]
    except BenchmarkError as e: raise gr.Error(str(e).replace(str(Path(settings.data_root).resolve()), "<data>")) from None

def upload_sample(files, max_mb: int) -> Sample:
    "A sample of uploaded images (no poses: only image-based simulators apply)."
    if not files: raise gr.Error("upload one or more images first")
    if len(files) > MAX_UPLOAD_IMAGES: raise gr.Error(f"at most {MAX_UPLOAD_IMAGES} images")
    images = []
    for f in files:
        p = Path(getattr(f, "name", f))
        if p.stat().st_size > max_mb * 2**20: raise gr.Error(f"{p.name}: larger than {max_mb} MB")
        try:
            im = Image.open(p)
            if im.width * im.height > MAX_UPLOAD_PIXELS: raise ValueError(f"{im.width}x{im.height} is over {MAX_UPLOAD_PIXELS:,} pixels")
            images.append(im.convert("RGB"))
        except Exception as e: raise gr.Error(f"{p.name}: not a readable image ({e})") from None
    return Sample(id="upload", question="Uploaded images.", images=images, category="upload", meta={"source": "upload"})

# ----------------------------------------------------------------------------- Simulator tab
HISTORY_SHOWN = 16          # most recent views in the Simulator tab's history strip

def _image_dir() -> Path:
    return Path(tempfile.gettempdir()) / "astra_wb_app"

def _sim_view(st: dict, status: str):
    "The fast outputs of a Simulator handler: state, latest image, reference choices, status."
    sample, obs = st["sample"], st["observations"]
    files = st.setdefault("files", [])       # PNGs written once per image (Gradio serves copies from its cache)
    images = list(sample.images) + [o.image for o in obs]
    files += [viz.image_file(im, _image_dir()) for im in images[len(files):]]
    ref = st.get("reference", 1)
    return st, files[-1], gr.update(choices=list(range(1, len(images) + 1)), value=ref), status

def sim_views(st: dict | None):
    "The slower outputs, chained after the image: history of views and the top-down map (when poses are known)."
    if not st: return [], None
    sample, obs = st["sample"], st["observations"]
    captions = [f"Image {i} (given)" for i in range(1, len(sample.images) + 1)] + [o.provenance() for o in obs]
    fig = (viz.topdown_figure(sample.meta.get("scene"), viz.sample_cameras(sample, obs, reference=st.get("reference", 1)),
                              height=380) if sample.poses else None)
    return list(zip(st.get("files", []), captions))[-HISTORY_SHOWN:], fig

def sim_load(settings: Settings, source, seed, kind, folder, index, files):
    if source == "synthetic scene": sample = synthetic_scene_sample(int(seed or 0))
    elif source == "benchmark sample": sample = pick_sample(settings, kind, folder, seed, index)
    elif source == "upload": sample = upload_sample(files, settings.max_upload_mb)
    else: raise gr.Error(f"unknown source {source!r}")
    return _sim_view({"sample": sample, "observations": [], "reference": 1},
                     f"Loaded **{sample.id}**: {len(sample.images)} image(s)" + (", poses known." if sample.poses else "."))

def sim_imagine(st: dict | None, reference, motion: Motion, spec: str, allowed):
    if not st: raise gr.Error("load a scene or sample first")
    from astra_wb.simulators import SimulatorError
    sim, ref = _simulator(_choice(spec, allowed, "simulator")), int(reference or 1)
    n = len(st["sample"].images) + len(st["observations"])
    if not 1 <= ref <= n: raise gr.Error(f"reference image must be 1..{n}, got {ref}")
    try: obs = sim.imagine(st["sample"], st["observations"], ref, motion.check())
    except (SimulatorError, MotionError) as e: raise gr.Error(f"{type(e).__name__}: {e}") from None
    st = {**st, "observations": st["observations"] + [obs], "reference": obs.index, "files": list(st.get("files", []))}
    return _sim_view(st, obs.provenance() + f" · {obs.simulator}")

def sim_motion(motion_type: str, allowed, st, reference, distance, angle, spec):
    kind, _ = TOOL_MOTION_TYPES[motion_type]
    value = float(angle if kind in ("yaw", "pitch") else distance)
    try: motion = Motion.from_tool(motion_type, value)
    except MotionError as e: raise gr.Error(str(e)) from None
    return sim_imagine(st, reference, motion, spec, allowed)

def sim_text(allowed, st, reference, text, spec):
    try: ref, motion = parse_instruction(str(text or ""))
    except MotionError as e: raise gr.Error(f"cannot read the instruction: {e}") from None
    return sim_imagine(st, ref or reference, motion, spec, allowed)

# ----------------------------------------------------------------------------- Agent tab
def _agent_outputs(traj: Trajectory, status: str):
    fig = (viz.topdown_figure(traj.sample.meta.get("scene"), viz.trajectory_cameras(traj), height=360)
           if traj.sample.poses else None)
    return viz.trajectory_to_messages(traj), status, fig, {"traj": traj}

def agent_run(settings, policies, simulators, kind, folder, seed, index, policy, spec, mode, k):
    sample = pick_sample(settings, kind, folder, seed, index)
    _choice(policy, policies, "policy"); _choice(spec, simulators, "simulator"); _choice(mode, MODES, "mode")
    if policy == "human":
        traj = Trajectory(sample=sample, mode=mode, forced_k=int(k) if mode == "forced" else 0, policy="human", simulator=spec)
        yield _agent_outputs(traj, "Your turn: write your reasoning, then call the simulator or answer.")
        return
    from astra_wb.agent import AgentConfig, iter_rollout
    cfg = AgentConfig(mode=mode, forced_k=int(k))
    traj = None
    for traj in iter_rollout(sample, _policy(policy), _simulator(spec), cfg):
        yield _agent_outputs(traj, f"turn {len(traj.turns)} · {traj.n_tool_calls} tool call(s)")
    if traj is not None:
        _, word = viz._verdict(traj)
        yield _agent_outputs(traj, f"done: {word} (answer {traj.final_answer}, truth {sample.answer}) · "
                                   f"{traj.n_tool_calls} tool call(s)")

def _human_turn(st, text: str) -> Trajectory:
    "Advance the human's trajectory by their turn under the agent loop's own rules (`agent.apply_turn`)."
    from astra_wb.agent import apply_turn
    traj: Trajectory = st["traj"]
    return apply_turn(traj, text, _simulator(traj.simulator))

def _require_human(st):
    if not st or not st.get("traj") or st["traj"].policy != "human": raise gr.Error("start a run with policy 'human' first")
    if st["traj"].meta.get("stop_reason"): raise gr.Error("this trajectory is finished; start a new run")
    return st

def human_call(st, reasoning, reference, motion_type, value):
    st = _require_human(st)
    try: motion = Motion.from_tool(_choice(motion_type, TOOL_MOTION_TYPES, "motion"), float(value))
    except MotionError as e: raise gr.Error(str(e)) from None
    text = render_tool_call(Invoke(int(reference or 1), motion, str(reasoning or "")), str(reasoning or ""))
    traj = _human_turn(st, text)
    last = traj.turns[-1]
    return _agent_outputs(traj, last.feedback or (last.observation.provenance() if last.observation else ""))

def human_answer(st, reasoning, answer):
    st = _require_human(st)
    traj = _human_turn(st, render_answer(str(answer or "").strip(), str(reasoning or "")))
    last = traj.turns[-1]
    if last.feedback: return _agent_outputs(traj, last.feedback)
    _, word = viz._verdict(traj)
    return _agent_outputs(traj, f"answered {traj.final_answer}: {word} (truth {traj.sample.answer})")

# ----------------------------------------------------------------------------- Runs tab
class _RowView:
    "A results.jsonl row seen through the attributes `viz.FILTERS` reads."
    def __init__(self, row: dict):
        self.row, self.correct, self.valid = row, row.get("correct"), bool(row.get("valid", True))
        self.n_tool_calls, self.invalid_reasons = int(row.get("n_tool_calls") or 0), list(row.get("invalid_reasons") or [])

def runs_open(settings: Settings, names, filt):
    from astra_wb.eval import RunError, load_run
    names = [names] if isinstance(names, str) else list(names or [])
    if not names: raise gr.Error("choose one or more runs")
    groups, metrics = {}, {}
    for name in names:
        try: run = load_run(safe_path(settings.runs_root, name, "run"))
        except RunError as e: raise gr.Error(str(e).replace(str(Path(settings.runs_root).resolve()), "<runs>")) from None
        groups[name], metrics[name] = run.rows, run.metrics
    st = {"run": names[0], "rows": groups[names[0]]}
    rows = {k: v for k, v in groups.items() if v}
    acc = viz.accuracy_figure(rows) if rows else None
    tools = viz.tool_use_figure(rows) if rows else None
    return (metrics, acc, tools) + runs_show(settings, st, filt, 0)

def runs_show(settings: Settings, st, filt, pos):
    "Trajectory `pos` among the rows passing `filt`; loaded from its folder inside the runs root."
    if not st: raise gr.Error("open a run first")
    shown = viz.filter_trajectories([_RowView(r) for r in st["rows"]], _choice(filt, viz.FILTERS, "filter"))
    if not shown: return st, 0, f"no trajectory in {st['run']} matches '{filt}'", ""
    pos = max(0, min(int(pos or 0), len(shown) - 1))
    row = shown[pos].row
    head = f"{st['run']}: {pos + 1} / {len(shown)} ({filt}) · {row.get('id')}"
    if not row.get("trajectory"): return st, pos, head, f"<pre>{viz.html.escape(str(row.get('error') or 'no trajectory saved'))}</pre>"
    folder = safe_path(settings.runs_root, f"{st['run']}/{row['trajectory']}", "trajectory")
    from astra_wb.protocol import ProtocolError
    try: traj = load_trajectory(folder)
    except ProtocolError as e: raise gr.Error(str(e).replace(str(Path(settings.runs_root).resolve()), "<runs>")) from None
    return st, pos, head, viz.trajectory_html(traj)

def runs_step(settings: Settings, st, filt, pos, delta: int):
    return runs_show(settings, st, filt, int(pos or 0) + delta)

# ----------------------------------------------------------------------------- Annotate tab
def _store(settings: Settings):
    from astra_wb.annotate import LabelStore
    return LabelStore(settings.label_db)

def _annotator(name, request=None) -> str:
    user = getattr(request, "username", None) if request is not None else None
    name = (user or str(name or "")).strip()
    if not name: raise gr.Error("enter your annotator name")
    return name

def ann_login(settings, name, request=None):
    from astra_wb.annotate import LabelError
    try:
        with _store(settings) as s: p = s.login(_annotator(name, request))
    except LabelError as e: raise gr.Error(str(e)) from None
    return {"annotator": p.annotator}, f"Logged in as **{p.annotator}**: {p.labelled} labelled, {p.available} available."

def ann_queue(settings, run):
    from astra_wb.annotate import LabelError
    folder = safe_path(settings.runs_root, run, "run")
    try:
        with _store(settings) as s: ids = s.register_run(folder)
    except LabelError as e:
        raise gr.Error(str(e).replace(str(folder), str(run)).replace(str(Path(settings.runs_root).resolve()), "<runs>")) from None
    return f"Queued {len(ids)} trajectories from {run}."

def ann_next(settings, st):
    if not st or not st.get("annotator"): raise gr.Error("log in first")
    with _store(settings) as s:
        item = s.next_item(st["annotator"])
        if item is None: return {**st, "item": None}, "Nothing left to label for you.", ""
        root = Path(settings.runs_root).resolve()
        if item.path is None or not Path(item.path).resolve().is_relative_to(root):
            s.release(st["annotator"], item.trajectory, skip=True)
            raise gr.Error(f"{item.trajectory}: its folder is outside the runs root; skipped")
        cur = s.current(st["annotator"], item.trajectory)
    st = {**st, "item": item.trajectory, "base": cur.version if cur else 0, "event": uuid.uuid4().hex}
    from astra_wb.protocol import ProtocolError
    try: traj = item.load()
    except ProtocolError as e: raise gr.Error(str(e).replace(str(Path(settings.runs_root).resolve()), "<runs>")) from None
    return st, f"Labelling **{item.trajectory}** ({item.n_labelled}/{item.required} annotators so far).", viz.trajectory_html(traj)

def ann_save(settings, st, label, subtags, note, turn):
    from astra_wb.annotate import LabelConflict, LabelError
    if not st or not st.get("item"): raise gr.Error("get a trajectory first")
    turn = int(turn) if turn not in (None, "", 0) and not (isinstance(turn, float) and math.isnan(turn)) else None
    try:
        with _store(settings) as s:
            ev = s.save_label(st["annotator"], st["item"], label, base_version=st["base"], subtags=subtags or (),
                              note=str(note or ""), turn=turn, event_id=st["event"])
    except LabelConflict as e: return st, f"⚠ not saved, conflict: {e}"
    except LabelError as e: return st, f"⚠ not saved: {e}"
    # saved: a further save of this item is an edit of this version
    return ({**st, "base": ev.version, "event": uuid.uuid4().hex},
            f"✓ saved {ev.label} on {ev.trajectory} (version {ev.version})")

def ann_skip(settings, st):
    if not st or not st.get("item"): raise gr.Error("get a trajectory first")
    with _store(settings) as s: s.release(st["annotator"], st["item"], skip=True)
    return ann_next(settings, {**st, "item": None})

def ann_agreement(settings):
    with _store(settings) as s: agr, stats = s.agreement(), s.stats()
    return str(agr), viz.agreement_figure(agr, stats.get("labels", {}))

# ----------------------------------------------------------------------------- layout
def _sample_picker(settings: Settings, simulator_tab: bool):
    sources = ["synthetic scene", "benchmark sample", "upload"] if simulator_tab else None
    with gr.Row():
        source = gr.Radio(sources, value=sources[0], label="source") if sources else None
        seed = gr.Number(0, precision=0, label="seed", minimum=0)
        kind = gr.Dropdown(list(BENCHMARK_KINDS), value="synth", label="benchmark")
        folder = gr.Dropdown([""] + list_names(settings.data_root, depth=2), value="", allow_custom_value=True,
                             label="folder under the data root (empty: generated synthetic bench)")
        index = gr.Number(0, precision=0, label="sample #", minimum=0)
    return source, seed, kind, folder, index

def create_app(settings: Settings | None = None) -> gr.Blocks:
    "The workbench UI wired to the library (launch it with `main`)."
    settings = settings or load_settings()
    sims = tuple(dict.fromkeys([settings.default_simulator, *SIMULATORS]))
    pols = tuple(dict.fromkeys([settings.default_policy, *POLICIES]))
    with gr.Blocks(title="astra-wb") as demo:
        gr.Markdown("# astra-wb · thinking with imagination")
        with gr.Tab("Simulator", id="simulator"):
            s_state = gr.State(None)
            source, seed, kind, folder, index = _sample_picker(settings, True)
            with gr.Row():
                files = gr.File(file_count="multiple", file_types=["image"], label="upload images", height=90)
                load = gr.Button("Load", variant="primary")
            with gr.Row():
                spec = gr.Dropdown(list(sims), value=sims[0], label="simulator")
                ref = gr.Dropdown([1], value=1, label="reference image")
                dist = gr.Slider(0.1, 5.0, 1.0, step=0.1, label="distance (m)")
                ang = gr.Slider(5, 180, 30, step=5, label="angle (deg)")
            motion_btns = {}
            with gr.Row():
                for mt in TOOL_MOTION_TYPES: motion_btns[mt] = gr.Button(mt.replace("_", " "), size="sm", elem_id=f"btn-{mt}")
            with gr.Row():
                instr = gr.Textbox(label="or type an instruction", placeholder="Based on the viewpoint of image 1, move 1.5 meters forward.", scale=4)
                go_text = gr.Button("Imagine", scale=1)
            s_status = gr.Markdown(elem_classes="awb-status")
            with gr.Row():
                view = gr.Image(label="imagined view", type="pil", format="png", elem_id="awb-imagined", height=420)
                topmap = gr.Plot(label="top-down map")
            history = gr.Gallery(label="views so far", columns=6, height=200)
            outs = [s_state, view, ref, s_status]
            # the image first; history and map follow in a chained event (fast feedback on every motion)
            views = dict(fn=sim_views, inputs=[s_state], outputs=[history, topmap], queue=False)
            load.click(partial(sim_load, settings), [source, seed, kind, folder, index, files], outs,
                       api_name="load_sample").then(**views, api_visibility="private")
            for mt, b in motion_btns.items():
                # queue=False: a motion is milliseconds of work; the queue's round trip would dominate it
                b.click(partial(sim_motion, mt, sims), [s_state, ref, dist, ang, spec], outs, api_name=mt,
                        queue=False).then(**views, api_visibility="private")
            ev_text = dict(fn=partial(sim_text, sims), inputs=[s_state, ref, instr, spec], outputs=outs, queue=False)
            go_text.click(**ev_text, api_name="imagine_text").then(**views, api_visibility="private")
            instr.submit(**ev_text, api_visibility="private").then(**views, api_visibility="private")
            refresh_views = gr.Button("refresh views", visible=False)
            refresh_views.click(**views, api_name="views")
            ref.change(lambda st, r: {**st, "reference": int(r)} if st else st, [s_state, ref], [s_state], api_visibility="private", queue=False)

        with gr.Tab("Agent", id="agent"):
            a_state = gr.State(None)
            _, a_seed, a_kind, a_folder, a_index = _sample_picker(settings, False)
            with gr.Row():
                policy = gr.Dropdown(list(pols), value=pols[0], label="policy")
                a_spec = gr.Dropdown(list(sims), value=sims[0], label="simulator")
                mode = gr.Radio(list(MODES), value="agentic", label="mode")
                k = gr.Number(2, precision=0, minimum=1, maximum=3, label="forced k")
                run = gr.Button("Run", variant="primary")
            a_status = gr.Markdown(elem_classes="awb-status")
            with gr.Row():
                chat = gr.Chatbot(label="trajectory", height=560, scale=3)
                a_map = gr.Plot(label="cameras", scale=2)
            with gr.Accordion("Play the policy yourself (policy: human)", open=False):
                reasoning = gr.Textbox(label="reasoning", lines=2)
                with gr.Row():
                    h_ref = gr.Number(1, precision=0, minimum=1, label="reference image")
                    h_mt = gr.Dropdown(list(TOOL_MOTION_TYPES), value="move_forward", label="motion")
                    h_val = gr.Number(1.0, minimum=0.01, label="value (m or deg)")
                    h_call = gr.Button("Call simulator")
                with gr.Row():
                    h_ans = gr.Textbox(label="answer (letter)", max_lines=1)
                    h_answer = gr.Button("Answer")
            a_outs = [chat, a_status, a_map, a_state]
            run.click(partial(agent_run, settings, pols, sims), [a_kind, a_folder, a_seed, a_index, policy, a_spec, mode, k],
                      a_outs, api_name="agent_run")
            h_call.click(human_call, [a_state, reasoning, h_ref, h_mt, h_val], a_outs, api_name="human_call")
            h_answer.click(human_answer, [a_state, reasoning, h_ans], a_outs, api_name="human_answer")

        with gr.Tab("Runs", id="runs"):
            r_state = gr.State(None)
            with gr.Row():
                runs = gr.Dropdown(list_names(settings.runs_root, runs=True), multiselect=True, allow_custom_value=True,
                                   label="runs (first one is browsed)")
                refresh = gr.Button("Refresh", size="sm")
                open_btn = gr.Button("Open", variant="primary")
            metrics = gr.JSON(label="metrics")
            with gr.Row():
                acc_plot, tool_plot = gr.Plot(label="accuracy"), gr.Plot(label="tool use")
            with gr.Row():
                filt = gr.Dropdown(list(viz.FILTERS), value="all", label="show")
                prev_b, next_b = gr.Button("◀ previous"), gr.Button("next ▶")
                pos = gr.Number(0, precision=0, minimum=0, label="trajectory # (0-based)")
            r_status = gr.Markdown(elem_classes="awb-status")
            traj_html = gr.HTML()
            show_outs = [r_state, pos, r_status, traj_html]
            refresh.click(lambda: gr.update(choices=list_names(settings.runs_root, runs=True)), None, runs, api_name="list_runs", queue=False)
            open_btn.click(partial(runs_open, settings), [runs, filt], [metrics, acc_plot, tool_plot] + show_outs, api_name="open_runs")
            filt.change(lambda st, f: runs_show(settings, st, f, 0), [r_state, filt], show_outs, api_visibility="private")
            pos.submit(partial(runs_show, settings), [r_state, filt, pos], show_outs, api_name="show_trajectory")
            prev_b.click(partial(runs_step, settings, delta=-1), [r_state, filt, pos], show_outs, api_visibility="private")
            next_b.click(partial(runs_step, settings, delta=1), [r_state, filt, pos], show_outs, api_visibility="private")

        with gr.Tab("Annotate", id="annotate"):
            from astra_wb.annotate import SUBTAG_TITLES, label_choices, subtag_choices
            n_state = gr.State(None)
            with gr.Row():
                who = gr.Textbox(label="annotator", max_lines=1)
                login = gr.Button("Log in")
                q_run = gr.Dropdown(list_names(settings.runs_root, runs=True), allow_custom_value=True, label="queue a run for labelling")
                q_btn = gr.Button("Queue run")
            n_status = gr.Markdown(elem_classes="awb-status")
            with gr.Row():
                with gr.Column(scale=3): n_html = gr.HTML()
                with gr.Column(scale=2):
                    label = gr.Radio(label_choices(), label="label")
                    subtags = gr.CheckboxGroup([(t, c) for c, t in SUBTAG_TITLES.items()], label="sub-tags")
                    turn = gr.Number(0, precision=0, minimum=0, label="turn it refers to (0: the whole trajectory)")
                    note = gr.Textbox(label="note", lines=3)
                    with gr.Row():
                        save, skip, nxt = gr.Button("Save", variant="primary"), gr.Button("Skip"), gr.Button("Next trajectory")
                    saved = gr.Markdown(elem_id="awb-saved")
            with gr.Accordion("Agreement", open=False):
                agr_btn = gr.Button("Compute agreement")
                agr_txt, agr_plot = gr.Textbox(label="summary", lines=4), gr.Plot()
            def _login(name, request: gr.Request):   # a real function: gradio injects the request by annotation
                return ann_login(settings, name, request)
            login.click(_login, [who], [n_state, n_status], api_name="login")
            q_btn.click(partial(ann_queue, settings), [q_run], [n_status], api_name="queue_run")
            blank = dict(fn=lambda: (None, [], "", 0, ""), inputs=None, outputs=[label, subtags, note, turn, saved], api_visibility="private")
            nxt.click(partial(ann_next, settings), [n_state], [n_state, n_status, n_html], api_name="next_trajectory").then(**blank)
            skip.click(partial(ann_skip, settings), [n_state], [n_state, n_status, n_html], api_name="skip").then(**blank)
            label.change(lambda l: gr.update(choices=subtag_choices(l), value=[]), [label], [subtags], api_visibility="private")
            save.click(lambda: "saving…", None, saved, api_visibility="private").then(
                partial(ann_save, settings), [n_state, label, subtags, note, turn], [n_state, saved], api_name="save_label")
            agr_btn.click(partial(ann_agreement, settings), None, [agr_txt, agr_plot], api_name="agreement")
    return demo

# ----------------------------------------------------------------------------- launch
def parse_auth(spec: str) -> list[tuple[str, str]] | None:
    "'user:password[,user2:password2]' -> [(user, password), ...]; empty -> None (no auth)."
    pairs = [p.strip() for p in (spec or "").split(",") if p.strip()]
    if not pairs: return None
    out = []
    for p in pairs:
        user, sep, pw = p.partition(":")
        if not sep or not user or not pw: raise ValueError("app_auth: expected 'user:password[,user2:password2]'")
        out.append((user, pw))
    return out

def main(argv: list[str] | None = None) -> int:
    "`astra-wb app`: launch the workbench (binds 127.0.0.1 unless settings or --host say otherwise)."
    p = argparse.ArgumentParser(prog="astra-wb app", description="Launch the Gradio workbench.")
    p.add_argument("--settings", help="settings.ini to read (default: ./settings.ini)")
    p.add_argument("--host", help="interface to bind (default from settings: 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default from settings)")
    p.add_argument("--data-root", help="benchmarks and synthetic benches; the app reads files only under it and --runs-root")
    p.add_argument("--runs-root", help="run folders (Runs and Annotate tabs)")
    p.add_argument("--label-db", help="the annotators' SQLite label store")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    s = load_settings(a.settings)
    for field, val in [("app_host", a.host), ("app_port", a.port), ("data_root", a.data_root),
                       ("runs_root", a.runs_root), ("label_db", a.label_db)]:
        if val is not None: setattr(s, field, val)
    try: auth = parse_auth(s.app_auth)
    except ValueError as e: print(f"astra-wb app: {e}", file=sys.stderr); return 2
    if s.app_host not in ("127.0.0.1", "localhost", "::1") and not auth:
        print(f"astra-wb app: warning: binding {s.app_host} without auth exposes the workbench to the network", file=sys.stderr)
    for name in ("data_root", "runs_root"):
        if not Path(getattr(s, name)).is_dir():
            print(f"astra-wb app: warning: {name} {getattr(s, name)} is not a folder (nothing to list there yet)", file=sys.stderr)
    import socket
    if int(s.app_port) == 0:   # any free port (gradio itself cannot bind port 0)
        with socket.socket() as sock: sock.bind((s.app_host, 0)); s.app_port = sock.getsockname()[1]
    else:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the server will: TIME_WAIT is no conflict
            try: sock.bind((s.app_host, int(s.app_port)))
            except OSError as e:
                print(f"astra-wb app: cannot listen on {s.app_host}:{s.app_port} ({e.strerror}); pick another --port", file=sys.stderr); return 2
    from astra_wb.serve import app_kwargs, limit_handlers
    # handlers get a time limit; with auth, AuthGate answers every unauthenticated request before Gradio does
    limit_handlers(create_app(s), s.app_timeout_s).queue(default_concurrency_limit=2).launch(
        server_name=s.app_host, server_port=int(s.app_port), auth=auth, max_file_size=f"{int(s.max_upload_mb)}mb",
        css=CSS, share=False, inbrowser=False, show_error=True, ssr_mode=False, app_kwargs=app_kwargs())
    return 0

if __name__ == "__main__": sys.exit(main())
