"""The astra-wb Gradio workbench: Simulator, Agent, Runs and Annotate tabs.

Thin wiring: every handler validates its inputs and calls `astra_wb`; renderers live in
`astra_wb.viz`. Per-user state is in `gr.State`. Security defaults: bind 127.0.0.1, optional
auth from settings, files only under the data / runs roots (names, never paths, come from the
user), an upload size limit.
"""
import argparse, inspect, json, math, os, re, sys, tempfile, traceback, uuid
from dataclasses import replace
from functools import lru_cache, partial, wraps
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr
from PIL import Image

from astra_wb import viz
from astra_wb.registry import resolve
from astra_wb.settings import Settings, load_settings
from astra_wb.motion import TOOL_MOTION_TYPES, Motion, MotionError, parse_instruction
from astra_wb.protocol import Invoke, Sample, Trajectory, load_trajectory, render_answer, render_tool_call

MODES = ("agentic", "forced", "direct")
SIMULATORS = ("oracle", "reproject", "perturbed(oracle,pose_noise=0.2)")
POLICIES = ("expert", "human")
BENCHMARK_KINDS = ("synth", "mmsi", "mindcube", "mmsi-video")
SYNTH_BENCH_N = 12          # samples generated per seed for the "synthetic bench" source
MAX_UPLOAD_IMAGES = 8
MAX_UPLOAD_PIXELS = 40_000_000   # a small compressed file can still decode to gigabytes
CSS = (".awb-status{min-height:1.5em} #awb-imagined img{object-fit:contain} #awb-title h3{margin:0}"
       " #awb-motions button{flex:1 1 30%} #awb-options button{flex:1 1 45%}")

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
    try:
        p = resolve_under(root, name)  # also refuses what pathlib would raise on (too long, a symlink loop)
    except SafeIOError:
        raise PathError(f"{what} {name!r} not found") from None
    try:
        if p.exists():
            return p
    except (OSError, ValueError):
        pass
    raise PathError(f"{what} {name!r} not found")

def list_names(root, runs: bool = False, depth: int = 1, limit: int = 500) -> list[str]:
    "Relative names under `root` (down to `depth` levels) that stay inside it; runs: folders with trajectories or results."
    root = Path(root)
    if not root.is_dir():
        return []
    real, out, level = root.resolve(), [], [root]
    for _ in range(depth):
        nxt = []
        for d in level:
            for p in sorted(d.iterdir()):
                try:
                    if p.name.startswith(".") or not p.resolve().is_relative_to(real):
                        continue
                except (OSError, RuntimeError, ValueError):
                    continue  # a symlink loop, a name too long: not listed
                is_run = p.is_dir() and ((p / "trajectories").is_dir() or (p / "results.jsonl").exists())
                if not runs or is_run:
                    out.append(p.relative_to(root).as_posix())
                if p.is_dir() and not (runs and is_run):
                    nxt.append(p)  # a folder of runs (runs/demo): look inside
        level = nxt
    return out[:limit]

def _choice(value, allowed, what: str):
    if value not in allowed:
        raise gr.Error(f"unknown {what} {value!r}; expected one of {list(allowed)}")
    return value

# ----------------------------------------------------------------------------- library access (cached)
@lru_cache(maxsize=8)
def _simulator(spec: str):
    return resolve(spec)

@lru_cache(maxsize=4)
def _policy(spec: str):
    return resolve(spec, "policy")

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
        files_root = getattr(bench, "image_root", None) or getattr(
            bench, "root", None
        )  # MindCube may look up two folders
        if files_root is not None and not Path(files_root).resolve().is_relative_to(
            Path(settings.data_root).resolve()
        ):
            raise gr.Error(
                f"benchmark folder {folder!r}: its images would be read from outside the data root"
            )
        if not len(bench):
            raise gr.Error(f"benchmark folder {folder!r} holds no samples")
        return bench[index % len(bench)]
    except BenchmarkError as e:
        raise gr.Error(str(e).replace(str(Path(settings.data_root).resolve()), "<data>")) from None

def upload_sample(files, max_mb: int) -> Sample:
    "A sample of uploaded images (no poses: only image-based simulators apply)."
    if not files:
        raise gr.Error("upload one or more images first")
    if len(files) > MAX_UPLOAD_IMAGES:
        raise gr.Error(f"at most {MAX_UPLOAD_IMAGES} images")
    images = []
    for f in files:
        p = Path(getattr(f, "name", f))
        if p.stat().st_size > max_mb * 2**20:
            raise gr.Error(f"{p.name}: larger than {max_mb} MB")
        try:
            im = Image.open(p)
            if im.width * im.height > MAX_UPLOAD_PIXELS:
                raise ValueError(f"{im.width}x{im.height} is over {MAX_UPLOAD_PIXELS:,} pixels")
            images.append(im.convert("RGB"))
        except Exception as e:
            raise gr.Error(f"{p.name}: not a readable image ({e})") from None
    return Sample(
        id="upload", question="Uploaded images.", images=images, category="upload", meta={"source": "upload"}
    )

# ----------------------------------------------------------------------------- user errors
# A user's mistake is shown in words in the status line of the tab it happened in (never a bare "Error"),
# the other outputs keep their last good value, and the server log gets one line (tracebacks only for bugs).
_USER_ERRORS = {"SimulatorError", "PolicyError", "LabelConflict", "PathError", "HandlerTimeout"}

def _is_user_error(e: BaseException) -> bool:
    return isinstance(e, (gr.Error, ValueError, FileNotFoundError)) or type(e).__name__ in _USER_ERRORS

def error_text(e: BaseException) -> str:
    "The one line shown to the user: a gr.Error's message, or the library error's own text."
    msg = str(getattr(e, "message", "") or e) if isinstance(e, gr.Error) else str(e)
    msg = " ".join(msg.split()) or type(e).__name__
    return (
        msg
        if _is_user_error(e)
        else f"something went wrong ({type(e).__name__}: {msg}); the server log has details"
    )

def _log_error(where: str, e: BaseException):
    print(f"astra-wb app: {where}: {error_text(e)}", file=sys.stderr, flush=True)
    if not _is_user_error(e):
        traceback.print_exception(e, file=sys.stderr)  # a bug: the operator needs the trace

def guarded(fn, outputs: list, status, where: str | None = None):
    "`fn` whose exceptions become '⚠ message' in `status` while every other output is left as it was."
    i = next(k for k, o in enumerate(outputs) if o is status)
    where = where or getattr(getattr(fn, "func", fn), "__name__", "handler")
    def failed(e):
        _log_error(where, e)
        if len(outputs) == 1:
            return f"⚠ {error_text(e)}"
        return tuple(f"⚠ {error_text(e)}" if k == i else gr.skip() for k in range(len(outputs)))
    def timed_out(e):   # serve.limit_handlers' time limit, shown like any other user error
        return failed(
            type(e)(
                f"no answer within {e.seconds:g} s, the server stopped waiting; try again, or with less work"
            )
        )
    if inspect.isgeneratorfunction(getattr(fn, "func", fn)):
        @wraps(fn)
        def gen(*a, **kw):
            try:
                yield from fn(*a, **kw)
            except Exception as e:
                yield failed(e)
        gen.on_timeout = timed_out
        return gen
    @wraps(fn)
    def call(*a, **kw):
        try:
            return fn(*a, **kw)
        except Exception as e:
            return failed(e)
    call.on_timeout = timed_out
    return call

# ----------------------------------------------------------------------------- Simulator tab
HISTORY_SHOWN = 16          # most recent views in the Simulator tab's history strip

def _image_dir() -> Path:
    return Path(tempfile.gettempdir()) / "astra_wb_app"

def _sim_view(st: dict, status: str):
    "The fast outputs of a Simulator handler: state, the reference image, reference choices, status."
    sample, obs = st["sample"], st["observations"]
    files = st.setdefault("files", [])  # PNGs written once per image (Gradio serves copies from its cache)
    images = list(sample.images) + [o.image for o in obs]
    files += [viz.image_file(im, _image_dir()) for im in images[len(files):]]
    ref = min(max(int(st.get("reference", 1)), 1), len(files))
    return st, files[ref - 1], gr.update(choices=list(range(1, len(images) + 1)), value=ref), status

def _short_caption(o) -> str:
    mt, v = o.motion.to_tool()
    return f"{o.index} ← {o.reference_image}: {mt.replace('_', ' ')} {v:g}{'°' if 'turn' in mt or 'pitch' in mt else ' m'}"

def sim_views(st: dict | None):
    "The slower outputs, chained after the image: history of views (newest first) and the top-down map."
    if not st:
        return [], None
    sample, obs = st["sample"], st["observations"]
    captions = [f"{i} (given)" for i in range(1, len(sample.images) + 1)] + [_short_caption(o) for o in obs]
    fig = (
        viz.topdown_figure(
            sample.meta.get("scene"),
            viz.sample_cameras(sample, obs, reference=st.get("reference", 1)),
            height=330,
        )
        if sample.poses
        else None
    )
    return list(zip(st.get("files", []), captions))[::-1][:HISTORY_SHOWN], fig

def can_imagine(sample: Sample) -> bool:
    "The offered simulators need known camera poses (a synthetic scene, or posed RGB-D samples)."
    return bool(sample.poses) and all(p is not None for p in sample.poses)

NO_POSES = (" The offered simulators need known camera poses, which these images do not have, so the motion "
            "controls stay off. Explore with **synthetic scene**, or a synthetic benchmark sample.")

def sim_load(settings: Settings, source, seed, kind, folder, index, files):
    if source == "synthetic scene":
        sample = synthetic_scene_sample(int(seed or 0))
    elif source == "benchmark sample":
        sample = pick_sample(settings, kind, folder, seed, index)
    elif source == "upload":
        sample = upload_sample(files, settings.max_upload_mb)
    else:
        raise gr.Error(f"unknown source {source!r}")
    ok = can_imagine(sample)
    return _sim_view(
        {"sample": sample, "observations": [], "reference": 1},
        f"Loaded **{sample.id}**: {len(sample.images)} image(s)"
        + (", poses known." if ok else "." + NO_POSES),
    )

def sim_controls(st, n: int):
    "Motion controls are enabled only once a sample they can work on is loaded."
    on = bool(st) and can_imagine(st["sample"])
    return [gr.update(interactive=on) for _ in range(n)]

def outside_room(sample: Sample, obs) -> str:
    "A warning when an imagined camera stands outside the synthetic room (it would look down an endless corridor)."
    scene, pose = sample.meta.get("scene"), getattr(obs, "pose", None)
    room = scene.get("room_size") if isinstance(scene, dict) else getattr(scene, "room_size", None)
    if room is None or pose is None:
        return ""
    xy = [float(v) for v in pose[:2, 3]]
    out = max(max(-x, x - float(r)) for x, r in zip(xy, room[:2]))
    return f" · ⚠ the camera is now {out:.1f} m outside the room; move back in" if out > 0.05 else ""

def sim_imagine(st: dict | None, reference, motion: Motion, spec: str, allowed):
    if not st:
        raise gr.Error("load a scene or sample first")
    from astra_wb.simulators import SimulatorError
    sim, ref = _simulator(_choice(spec, allowed, "simulator")), int(reference or 1)
    n = len(st["sample"].images) + len(st["observations"])
    if not 1 <= ref <= n:
        raise gr.Error(f"reference image must be 1..{n}, got {ref}")
    try:
        obs = sim.imagine(st["sample"], st["observations"], ref, motion.check())
    except (SimulatorError, MotionError) as e:
        raise gr.Error(f"{type(e).__name__}: {e}") from None
    st = {
        **st,
        "observations": st["observations"] + [obs],
        "reference": obs.index,
        "files": list(st.get("files", [])),
    }
    return _sim_view(st, obs.provenance() + f" · {obs.simulator}" + outside_room(st["sample"], obs))

def sim_motion(motion_type: str, allowed, st, reference, distance, angle, spec):
    kind, _ = TOOL_MOTION_TYPES[motion_type]
    value = float(angle if kind in ("yaw", "pitch") else distance)
    try:
        motion = Motion.from_tool(motion_type, value)
    except MotionError as e:
        raise gr.Error(str(e)) from None
    return sim_imagine(st, reference, motion, spec, allowed)

def sim_text(allowed, st, reference, text, spec):
    if not st:
        raise gr.Error("load a scene or sample first")
    try:
        ref, motion = parse_instruction(str(text or ""))
    except MotionError as e:
        raise gr.Error(f"cannot read the instruction: {e}. Try e.g. 'turn 60 degrees left' or "
                       f"'based on the viewpoint of image 1, move 1.5 meters forward'") from None
    return sim_imagine(st, ref or reference, motion, spec, allowed)

def sim_pick_reference(st, r):
    "Choosing a reference image shows it (the next motion starts from what is on screen)."
    if not st:
        return st, gr.skip()
    st = {**st, "reference": int(r or 1)}
    return st, _sim_view(st, "")[1]

def picker_visibility(source):
    "Benchmark fields only for a benchmark sample, the file box only for uploads."
    bench, up = source == "benchmark sample", source == "upload"
    return gr.update(visible=bench), gr.update(visible=bench), gr.update(visible=bench), gr.update(visible=up)

# ----------------------------------------------------------------------------- Agent tab
MAX_OPTIONS = 6             # answer buttons shown to a human player

def _agent_outputs(traj: Trajectory, status: str):
    fig = (viz.topdown_figure(traj.sample.meta.get("scene"), viz.trajectory_cameras(traj), height=360)
           if traj.sample.poses else None)
    finished = bool(traj.meta.get("stop_reason")) or traj.policy != "human"
    msgs = viz.trajectory_to_messages(traj, show_truth=finished)
    if traj.policy == "human":  # the loop's feedback is written for a model; a person reads the plain version
        plain = {viz._tags_visible(t.feedback): plain_feedback(t, traj) for t in traj.turns if t.feedback}
        raw = {t.text for t in traj.turns if t.feedback}      # the markup the app wrote for the person's move
        msgs = [
            m
            for m in msgs
            if not (m["role"] == "assistant" and isinstance(m.get("content"), str) and m["content"] in raw)
        ]
        msgs = [{**m, "content": plain[m["content"]]} if m["role"] == "user" and isinstance(m["content"], str)
                and m["content"] in plain else m for m in msgs]
    return msgs, status, fig, {"traj": traj}

def agent_run(settings, policies, simulators, kind, folder, seed, index, policy, spec, mode, k):
    sample = pick_sample(settings, kind, folder, seed, index)
    _choice(policy, policies, "policy")
    _choice(spec, simulators, "simulator")
    _choice(mode, MODES, "mode")
    if policy == "human":
        traj = Trajectory(
            sample=sample,
            mode=mode,
            forced_k=int(k) if mode == "forced" else 0,
            policy="human",
            simulator=spec,
        )
        yield _agent_outputs(traj, HUMAN_START)
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

HUMAN_START = ("Your turn: read the question, then imagine a view (pick an image and a motion) "
               "or press the button of your answer.")

def agent_play(settings, simulators, kind, folder, seed, index, spec, mode, k):
    "One click to start a game with you as the policy."
    yield from agent_run(settings, ("human",), simulators, kind, folder, seed, index, "human", spec, mode, k)

def plain_feedback(turn, traj) -> str:
    "Plain-language feedback for a person after a turn that did not count."
    a, n = turn.action, len(traj.sample.images) + len(traj.observations)
    why = str(getattr(a, "detail", "") or getattr(a, "reason", "")).strip().rstrip(".")
    hint = {
        "out_of_range": f"Pick an image from 1 to {n} and a motion within the limits.",
        "tool_not_allowed": (
            "This mode has no simulator; choose an answer."
            if traj.mode == "direct"
            else "You have used every simulator call; choose an answer."
        ),
        "premature_answer": f"In forced mode you imagine {traj.forced_k} view(s) before answering.",
        "simulator_error": "Try another image or motion, or choose an answer.",
    }.get(getattr(a, "reason", ""), "Imagine a view or choose an answer.")
    return f"That turn did not count: {why}. {hint}"

def human_panel(st):
    "Show the player's controls and one button per option while a human game is on."
    traj = (st or {}).get("traj")
    on = bool(traj) and traj.policy == "human" and not traj.meta.get("stop_reason")
    opts = list(traj.sample.options.items())[:MAX_OPTIONS] if on else []
    btns = [
        gr.update(visible=i < len(opts), value=f"{opts[i][0]} · {opts[i][1]}"[:48] if i < len(opts) else "")
        for i in range(MAX_OPTIONS)
    ]
    return [gr.update(visible=on)] + btns

def _human_turn(st, text: str) -> Trajectory:
    "Advance the human's trajectory by their turn under the agent loop's own rules (`agent.apply_turn`)."
    from astra_wb.agent import apply_turn
    traj: Trajectory = st["traj"]
    return apply_turn(traj, text, _simulator(traj.simulator))

def _require_human(st):
    if not st or not st.get("traj") or st["traj"].policy != "human":
        raise gr.Error("start a game first (press 'Play it yourself', or Run with policy 'human')")
    if st["traj"].meta.get("stop_reason"):
        raise gr.Error("this game is finished; start a new one")
    return st

HUMAN_REASONING = "(played by a person)"   # the protocol wants reasoning; a person may skip it

def human_call(st, reasoning, reference, motion_type, value):
    st = _require_human(st)
    try:
        motion = Motion.from_tool(_choice(motion_type, TOOL_MOTION_TYPES, "motion"), float(value))
    except MotionError as e:
        raise gr.Error(str(e)) from None
    why = str(reasoning or "").strip() or HUMAN_REASONING
    traj = _human_turn(st, render_tool_call(Invoke(int(reference or 1), motion, why), why))
    last = traj.turns[-1]
    return _agent_outputs(
        traj,
        (
            plain_feedback(last, traj)
            if last.feedback
            else (
                last.observation.provenance() + " (shown at the bottom of the chat)"
                if last.observation
                else ""
            )
        ),
    )

def human_answer(st, reasoning, answer):
    st = _require_human(st)
    answer, options = str(answer or "").strip().upper(), st["traj"].sample.options
    if options and answer not in options:
        raise gr.Error(
            f"{answer or 'an empty answer'!r} is not an option; choose one of {', '.join(options)}"
        )
    why = str(reasoning or "").strip() or HUMAN_REASONING
    traj = _human_turn(st, render_answer(answer, why))
    last = traj.turns[-1]
    if last.feedback:
        return _agent_outputs(traj, plain_feedback(last, traj))
    _, word = viz._verdict(traj)
    return _agent_outputs(
        traj, f"You answered {traj.final_answer}: {word}. The answer was {traj.sample.answer}."
    )

# ----------------------------------------------------------------------------- Runs tab
class _RowView:
    "A results.jsonl row seen through the attributes `viz.FILTERS` reads."
    def __init__(self, row: dict):
        self.row, self.correct, self.valid = row, row.get("correct"), bool(row.get("valid", True))
        self.n_tool_calls, self.invalid_reasons = int(row.get("n_tool_calls") or 0), list(
            row.get("invalid_reasons") or []
        )

def metrics_table(metrics: dict):
    "One row per run: its scalar metrics (the report's headline numbers), not a raw JSON tree."
    import pandas as pd
    rows = []
    for name, m in metrics.items():
        m = m or {}
        flat = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        flat.update(
            {
                f"acc {c}": v.get("accuracy")
                for c, v in (m.get("per_category") or {}).items()
                if isinstance(v, dict)
            }
        )
        rows.append({"run": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in flat.items()}})
    return pd.DataFrame(rows)

def runs_open(settings: Settings, names, filt):
    from astra_wb.eval import RunError, load_run
    names = [names] if isinstance(names, str) else list(names or [])
    if not names:
        raise gr.Error("choose one or more runs")
    groups, metrics = {}, {}
    for name in names:
        try:
            run = load_run(safe_path(settings.runs_root, name, "run"))
        except RunError as e:
            raise gr.Error(str(e).replace(str(Path(settings.runs_root).resolve()), "<runs>")) from None
        groups[name], metrics[name] = run.rows, run.metrics
    st = {"run": names[0], "rows": groups[names[0]]}
    runs = {
        k: metrics[k] for k, v in groups.items() if v
    }  # charts read compute_metrics: the official Overall
    acc = viz.accuracy_figure(runs) if runs else None
    tools = viz.tool_use_figure(runs) if runs else None
    return (metrics_table(metrics), acc, tools) + runs_show(settings, st, filt, 1)

def runs_show(settings: Settings, st, filt, pos):
    "Trajectory number `pos` (1-based, clamped) among the rows passing `filt`; loaded from its folder in the runs root."
    if not st:
        raise gr.Error("open a run first")
    shown = viz.filter_trajectories([_RowView(r) for r in st["rows"]], _choice(filt, viz.FILTERS, "filter"))
    if not shown:
        return st, 1, f"no trajectory in {st['run']} matches '{filt}'", ""
    try:
        pos = int(pos or 1)
    except (TypeError, ValueError):
        pos = 1
    pos = max(1, min(pos, len(shown)))
    row = shown[pos - 1].row
    head = f"{st['run']}: {pos} / {len(shown)} ({filt}) · {row.get('id')}"
    if not row.get("trajectory"):
        return st, pos, head, f"<pre>{viz.html.escape(str(row.get('error') or 'no trajectory saved'))}</pre>"
    folder = safe_path(settings.runs_root, f"{st['run']}/{row['trajectory']}", "trajectory")
    from astra_wb.protocol import ProtocolError
    try:
        traj = load_trajectory(folder)
    except ProtocolError as e:
        raise gr.Error(str(e).replace(str(Path(settings.runs_root).resolve()), "<runs>")) from None
    return st, pos, head, viz.trajectory_html(traj)

def runs_step(settings: Settings, st, filt, pos, delta: int):
    try:
        pos = int(pos or 1)
    except (TypeError, ValueError):
        pos = 1
    return runs_show(settings, st, filt, max(1, pos) + delta)

# ----------------------------------------------------------------------------- Annotate tab
DEFAULT_OVERLAP = 0.2       # share of trajectories two annotators label, so agreement has data by default

def _store(settings: Settings):
    from astra_wb.annotate import LabelStore
    return LabelStore(settings.label_db)

def _annotator(name, request=None) -> str:
    user = getattr(request, "username", None) if request is not None else None
    name = (user or str(name or "")).strip()
    if not name:
        raise gr.Error("enter your annotator name")
    return name

def _progress_line(p) -> str:
    total = p.labelled + p.available
    return f"**{p.annotator}**: {p.labelled} of {total} done" + (
        " · all done, thank you!" if total and not p.available else ""
    )

def ann_login(settings, name, request=None):
    from astra_wb.labels import LabelError
    try:
        with _store(settings) as s:
            p = s.login(_annotator(name, request))
    except LabelError as e:
        raise gr.Error(str(e)) from None
    return {"annotator": p.annotator}, f"Logged in as **{p.annotator}** · {_progress_line(p)}."

def ann_queue(settings, run, overlap=None, k=None):
    "Queue a run's trajectories; `overlap` (share labelled by `k` annotators) is applied to the whole store."
    from astra_wb.labels import LabelError
    if not run:
        raise gr.Error("choose a run to queue")
    folder = safe_path(settings.runs_root, run, "run")
    try:
        with _store(settings) as s:
            if overlap is not None:
                s.configure(overlap_fraction=float(overlap), overlap_k=int(k or 2))
            before = s.stats()["trajectories"]
            ids = s.register_run(folder)
            new = s.stats()["trajectories"] - before
    except LabelError as e:
        raise gr.Error(
            str(e).replace(str(folder), str(run)).replace(str(Path(settings.runs_root).resolve()), "<runs>")
        ) from None
    share = (
        ""
        if overlap is None
        else f" {float(overlap):.0%} of all trajectories go to {int(k or 2)} annotators."
    )
    if not new:
        return f"{run} is already queued ({len(ids)} trajectories); nothing added.{share}"
    return (
        f"Queued {new} trajectories from {run}"
        + (f" ({len(ids) - new} were already queued)" if new < len(ids) else "")
        + f".{share}"
    )

def ann_config(settings):
    "The store's overlap settings for the sliders (a store never configured gets the default overlap)."
    if not Path(settings.label_db).exists():
        return DEFAULT_OVERLAP, 2  # nothing is created before someone labels
    try:
        with _store(settings) as s:
            cfg, n = s.config, s.stats()["events"]
    except Exception as e:   # an unreadable store is reported when it is used, not at start-up
        _log_error("ann_config", e)
        return DEFAULT_OVERLAP, 2
    frac = cfg.overlap_fraction if (cfg.overlap_fraction or n) else DEFAULT_OVERLAP
    return frac, cfg.overlap_k

def ann_next(settings, st):
    if not st or not st.get("annotator"):
        raise gr.Error("log in first")
    with _store(settings) as s:
        item = s.next_item(st["annotator"])
        p = s.progress(st["annotator"])
        if item is None:
            return {**st, "item": None}, f"Nothing left to label for you · {_progress_line(p)}.", ""
        root = Path(settings.runs_root).resolve()
        if item.path is None or not Path(item.path).resolve().is_relative_to(root):
            s.release(st["annotator"], item.trajectory, skip=True)
            raise gr.Error(f"{item.trajectory}: its folder is outside the runs root; skipped")
        cur = s.current(st["annotator"], item.trajectory)
    st = {**st, "item": item.trajectory, "base": cur.version if cur else 0, "event": uuid.uuid4().hex}
    from astra_wb.protocol import ProtocolError
    try:
        traj = item.load()
    except ProtocolError as e:
        raise gr.Error(str(e).replace(str(Path(settings.runs_root).resolve()), "<runs>")) from None
    return (
        st,
        f"Labelling **{item.trajectory}** ({item.n_labelled}/{item.required} annotators so far) · {_progress_line(p)}",
        viz.trajectory_html(traj),
    )

def ann_save(settings, st, label, subtags, note, turn):
    from astra_wb.annotate import LabelConflict
    from astra_wb.labels import LabelError
    if not st or not st.get("item"):
        raise gr.Error("get a trajectory first")
    if not label:
        return st, "⚠ not saved: choose a label first (keys 1-8 pick one)"
    turn = (
        int(turn)
        if turn not in (None, "", 0) and not (isinstance(turn, float) and math.isnan(turn))
        else None
    )
    try:
        with _store(settings) as s:
            ev = s.save_label(
                st["annotator"],
                st["item"],
                label,
                base_version=st["base"],
                subtags=subtags or (),
                note=str(note or ""),
                turn=turn,
                event_id=st["event"],
            )
    except LabelConflict as e:
        return st, f"⚠ not saved, conflict: {e}"
    except LabelError as e:
        return st, f"⚠ not saved: {plain_label_error(e)}"
    # saved: a further save of this item is an edit of this version
    return ({**st, "base": ev.version, "event": uuid.uuid4().hex},
            f"✓ saved {ev.label} on {ev.trajectory} (version {ev.version})")

def plain_label_error(e) -> str:
    "A label-store message without the store's field syntax ('field 'note': ...' -> 'note: ...')."
    return re.sub(r"field '(\w+)': ", r"\1: ", str(e))

def ann_save_next(settings, st, label, subtags, note, turn):
    "Save, and on success serve the next trajectory with the form cleared (Enter in the tab)."
    st, saved = ann_save(settings, st, label, subtags, note, turn)
    if not saved.startswith("✓"):
        return st, gr.skip(), gr.skip(), saved, gr.skip(), gr.skip(), gr.skip(), gr.skip()
    st, status, page = ann_next(settings, st)
    return st, status, page, saved, None, gr.update(value=[], visible=False), "", 0

def ann_skip(settings, st):
    if not st or not st.get("item"):
        raise gr.Error("get a trajectory first")
    with _store(settings) as s:
        s.release(st["annotator"], st["item"], skip=True)
    return ann_next(settings, {**st, "item": None})

def ann_agreement(settings):
    from astra_wb.labels import LABELS
    with _store(settings) as s:
        agr, stats = s.agreement(), s.stats()
    if not agr.n_items:
        hint = (
            "No trajectory has labels from two annotators yet. Agreement needs overlap: queue runs with an overlap "
            "share above 0, and have two people label."
        )
        return hint, None
    titles = {c: LABELS[c].title for c in stats.get("labels", {}) if c in LABELS}
    counts = {titles.get(c, c): n for c, n in stats.get("labels", {}).items()}
    return str(agr), viz.agreement_figure(agr, counts)

def label_help() -> str:
    "Each label with its number key and one-line description, beside the choices."
    from astra_wb.labels import TAXONOMY
    return "\n".join(f"{i}. **{c.title}**: {c.description}" for i, c in enumerate(TAXONOMY, 1))

def label_description(label) -> str:
    "The chosen label's one-line guidance, shown beside the choices."
    from astra_wb.labels import LABELS
    c = LABELS.get(label)
    return f"**{c.title}**: {c.description}" if c else "Pick the label that fits; its description shows here."

def subtag_update(label):
    "Sub-tags appear only for a label that has them."
    from astra_wb.labels import subtag_choices
    ch = subtag_choices(label) if label else []
    return gr.update(choices=ch, value=[], visible=bool(ch))

# keys in the Annotate tab: 1-8 pick a label, Enter saves and serves the next trajectory (not while typing)
APP_JS = """
() => {
  document.addEventListener('keydown', (e) => {
    const tab = document.querySelector('#awb-annotate');
    if (!tab || tab.offsetParent === null || e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target, typing = t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && t.type !== 'radio' && t.type !== 'checkbox'));
    if (typing) return;
    if (/^[1-9]$/.test(e.key)) {
      const opts = document.querySelectorAll('#awb-label input[type=radio]');
      const o = opts[Number(e.key) - 1];
      if (o) { o.click(); e.preventDefault(); }
    } else if (e.key === 'Enter') {
      const b = document.querySelector('#awb-save-next');
      if (b && !b.disabled) { b.click(); e.preventDefault(); }
    }
  });
}
"""

# ----------------------------------------------------------------------------- layout
def _sample_picker(settings: Settings, simulator_tab: bool):
    "Source, seed and (for benchmark samples) benchmark, folder and sample number."
    sources = ["synthetic scene", "benchmark sample", "upload"] if simulator_tab else None
    source = gr.Radio(sources, value=sources[0], label="source") if sources else None
    with gr.Row():
        seed = gr.Number(0, precision=0, label="seed", min_width=80)
        index = gr.Number(0, precision=0, label="sample #", min_width=80, visible=not simulator_tab)
        kind = gr.Dropdown(
            list(BENCHMARK_KINDS),
            value="synth",
            label="benchmark",
            min_width=100,
            visible=not simulator_tab,
            allow_custom_value=True,
        )  # validated by the handlers, which say what is wrong
    folder = gr.Dropdown(
        [""] + list_names(settings.data_root, depth=2),
        value="",
        allow_custom_value=True,
        label="folder under the data root (empty: generated synthetic bench)",
        visible=not simulator_tab,
    )
    return source, seed, kind, folder, index

def _simulator_tab(settings: Settings, sims: tuple) -> SimpleNamespace:
    "The Simulator tab's components: a sample, a simulator, motion buttons, the view, map and history."
    s_state = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            source, seed, kind, folder, index = _sample_picker(settings, True)
            files = gr.File(
                file_count="multiple", file_types=["image"], label="upload images", height=90, visible=False
            )
            load = gr.Button("Load", variant="primary", size="sm")
            with gr.Row():
                spec = gr.Dropdown(
                    list(sims), value=sims[0], label="simulator", min_width=120, allow_custom_value=True
                )
                ref = gr.Dropdown(
                    [1], value=1, label="reference image", min_width=80, allow_custom_value=True
                )
            with gr.Row():
                dist = gr.Slider(
                    0.1, 5.0, 1.0, step=0.1, label="distance (m)", min_width=120, elem_id="awb-dist"
                )
                ang = gr.Slider(5, 180, 30, step=5, label="angle (deg)", min_width=120)
            motion_btns = {}
            with gr.Row(elem_id="awb-motions"):
                for mt in TOOL_MOTION_TYPES:
                    motion_btns[mt] = gr.Button(mt.replace("_", " "), size="sm", elem_id=f"btn-{mt}",
                                                min_width=90, interactive=False)
            with gr.Row():
                instr = gr.Textbox(
                    show_label=False, placeholder="or type: turn 60 degrees left", scale=4, min_width=150
                )
                go_text = gr.Button("Imagine", scale=1, size="sm", min_width=70, interactive=False)
        with gr.Column(scale=3, min_width=420):
            s_status = gr.Markdown(
                "Press **Load** to start.", elem_classes="awb-status", elem_id="awb-sim-status"
            )
            with gr.Row():
                view = gr.Image(
                    label="reference view (the next motion starts here)",
                    type="pil",
                    format="png",
                    elem_id="awb-imagined",
                    height=330,
                    min_width=200,
                )
                topmap = gr.Plot(label="top-down map", elem_id="awb-map", min_width=200)
    history = gr.Gallery(label="views so far (newest first)", columns=6, height=200)
    return SimpleNamespace(**{k: v for k, v in locals().items() if k not in ('settings', 'sims')})

def _wire_simulator(c: SimpleNamespace, settings: Settings, sims: tuple):
    "The Simulator tab's events: load, each motion, typed instructions, picking the reference."
    ang, dist, files, folder, go_text, history = c.ang, c.dist, c.files, c.folder, c.go_text, c.history
    index, instr, kind, load, motion_btns, ref = c.index, c.instr, c.kind, c.load, c.motion_btns, c.ref
    s_state, s_status, seed, source, spec = c.s_state, c.s_status, c.seed, c.source, c.spec
    topmap, view = c.topmap, c.view
    outs = [s_state, view, ref, s_status]
    controls = list(motion_btns.values()) + [go_text]
    # the image first; history and map follow in a chained event (fast feedback on every motion)
    views = dict(fn=sim_views, inputs=[s_state], outputs=[history, topmap], queue=False)
    source.change(
        picker_visibility, [source], [kind, folder, index, files], queue=False, api_visibility="private"
    )
    load.click(
        guarded(partial(sim_load, settings), outs, s_status),
        [source, seed, kind, folder, index, files],
        outs,
        api_name="load_sample",
    ).then(**views, api_visibility="private").then(
        partial(sim_controls, n=len(controls)), [s_state], controls, queue=False, api_visibility="private"
    )
    for mt, b in motion_btns.items():
        # queue=False: a motion is milliseconds of work; the queue's round trip would dominate it
        b.click(
            guarded(partial(sim_motion, mt, sims), outs, s_status, mt),
            [s_state, ref, dist, ang, spec],
            outs,
            api_name=mt,
            queue=False,
            trigger_mode="always_last",
        ).then(**views, api_visibility="private")
    # always_last: a second Enter while the first is still drawing runs after it instead of being dropped
    ev_text = dict(
        fn=guarded(partial(sim_text, sims), outs, s_status),
        inputs=[s_state, ref, instr, spec],
        outputs=outs,
        queue=False,
        trigger_mode="always_last",
    )
    go_text.click(**ev_text, api_name="imagine_text").then(**views, api_visibility="private")
    instr.submit(**ev_text, api_visibility="private").then(**views, api_visibility="private")
    refresh_views = gr.Button("refresh views", visible=False)
    refresh_views.click(**views, api_name="views")
    ref.input(
        sim_pick_reference, [s_state, ref], [s_state, view], api_visibility="private", queue=False
    ).then(**views, api_visibility="private")

def _agent_tab(settings: Settings, sims: tuple, pols: tuple) -> SimpleNamespace:
    "The Agent tab's components: a question, a simulator and mode, the human player's panel, the chat."
    a_state = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            with gr.Row():
                a_seed = gr.Number(0, precision=0, label="seed", min_width=70)
                a_index = gr.Number(0, precision=0, label="sample #", min_width=70)
                a_kind = gr.Dropdown(list(BENCHMARK_KINDS), value="synth", label="benchmark", min_width=100,
                                     allow_custom_value=True)
            with gr.Row():
                a_spec = gr.Dropdown(
                    list(sims), value=sims[0], label="simulator", min_width=120, allow_custom_value=True
                )
                mode = gr.Dropdown(
                    list(MODES), value="agentic", label="mode", min_width=100, allow_custom_value=True
                )
                k = gr.Number(2, precision=0, label="forced k", min_width=70)
            play = gr.Button("▶ Play it yourself", variant="primary", elem_id="awb-play")
            with gr.Group(visible=False, elem_id="awb-human") as panel:
                gr.Markdown("**Your move**: press your answer, or imagine a view first.")
                with gr.Row(elem_id="awb-options"):
                    ans_btns = [
                        gr.Button(visible=False, elem_id=f"awb-ans-{i}", min_width=80, variant="primary")
                        for i in range(MAX_OPTIONS)
                    ]
                with gr.Row():
                    h_ref = gr.Number(1, precision=0, label="from image", min_width=70)
                    h_mt = gr.Dropdown(
                        list(TOOL_MOTION_TYPES),
                        value="turn_left",
                        label="motion",
                        min_width=110,
                        allow_custom_value=True,
                    )
                    h_val = gr.Number(45, label="m or deg", min_width=70)
                h_call = gr.Button("Imagine this view", elem_id="awb-h-call")
                reasoning = gr.Textbox(label="your reasoning (optional)", lines=1)
            with gr.Row():
                policy = gr.Dropdown(
                    list(pols),
                    value=pols[0],
                    label="or let a policy play",
                    min_width=120,
                    allow_custom_value=True,
                )
                run = gr.Button("Run", variant="secondary", min_width=70)
            a_folder = gr.Dropdown(
                [""] + list_names(settings.data_root, depth=2),
                value="",
                allow_custom_value=True,
                label="benchmark folder under the data root (empty: generated synthetic bench)",
            )
        with gr.Column(scale=3, min_width=420):
            a_status = gr.Markdown(elem_classes="awb-status", elem_id="awb-agent-status")
            chat = gr.Chatbot(label="trajectory", height=470, elem_id="awb-chat", autoscroll=True)
            a_map = gr.Plot(label="cameras")
    return SimpleNamespace(**{k: v for k, v in locals().items() if k not in ('settings', 'sims', 'pols')})

def _wire_agent(c: SimpleNamespace, settings: Settings, sims: tuple, pols: tuple):
    "The Agent tab's events: a policy's run, a person's play (calls and answers)."
    a_folder, a_index, a_kind, a_map, a_seed = c.a_folder, c.a_index, c.a_kind, c.a_map, c.a_seed
    a_spec, a_state, a_status, ans_btns, chat = c.a_spec, c.a_state, c.a_status, c.ans_btns, c.chat
    h_call, h_mt, h_ref, h_val, k, mode, panel = c.h_call, c.h_mt, c.h_ref, c.h_val, c.k, c.mode, c.panel
    play, policy, reasoning, run = c.play, c.policy, c.reasoning, c.run
    a_outs = [chat, a_status, a_map, a_state]
    show_panel = dict(
        fn=human_panel, inputs=[a_state], outputs=[panel] + ans_btns, queue=False, api_visibility="private"
    )
    # the newest message (an imagined view) into sight once its image has loaded
    follow = "() => setTimeout(() => { const m = document.querySelectorAll('#awb-chat .message-row'); if (m.length) m[m.length - 1].scrollIntoView({block: 'end'}); }, 400)"
    run.click(
        guarded(partial(agent_run, settings, pols, sims), a_outs, a_status),
        [a_kind, a_folder, a_seed, a_index, policy, a_spec, mode, k],
        a_outs,
        api_name="agent_run",
    ).then(**show_panel)
    play.click(
        guarded(partial(agent_play, settings, sims), a_outs, a_status),
        [a_kind, a_folder, a_seed, a_index, a_spec, mode, k],
        a_outs,
        api_name="play",
    ).then(**show_panel)
    h_call.click(guarded(human_call, a_outs, a_status), [a_state, reasoning, h_ref, h_mt, h_val], a_outs,
                 api_name="human_call").then(**show_panel).then(None, js=follow)
    hidden_answer = gr.Textbox(visible=False)
    gr.Button(visible=False).click(
        guarded(human_answer, a_outs, a_status),
        [a_state, reasoning, hidden_answer],
        a_outs,
        api_name="human_answer",
    )
    for i, b in enumerate(ans_btns):
        b.click(guarded(partial(_answer_nth, i), a_outs, a_status), [a_state, reasoning], a_outs,
                api_visibility="private").then(**show_panel).then(None, js=follow)

def _runs_tab(settings: Settings) -> SimpleNamespace:
    "The Runs tab's components: run folders, their metrics and charts, one trajectory at a time."
    r_state = gr.State(None)
    with gr.Row():
        runs = gr.Dropdown(
            list_names(settings.runs_root, runs=True, depth=2),
            multiselect=True,
            allow_custom_value=True,
            label="runs (first one is browsed)",
            scale=4,
        )
        refresh = gr.Button("Refresh", size="sm", min_width=80)
        open_btn = gr.Button("Open", variant="primary", min_width=80)
    r_status = gr.Markdown(elem_classes="awb-status", elem_id="awb-runs-status")
    metrics = gr.Dataframe(label="metrics", interactive=False, max_height=220)
    with gr.Row():
        acc_plot, tool_plot = gr.Plot(label="accuracy"), gr.Plot(label="tool use")
    with gr.Row():
        filt = gr.Dropdown(
            list(viz.FILTERS), value="all", label="show", min_width=100, allow_custom_value=True
        )
        prev_b, next_b = gr.Button("◀ previous", min_width=90), gr.Button("next ▶", min_width=90)
        pos = gr.Number(1, precision=0, label="trajectory #", min_width=90)
    traj_html = gr.HTML()
    return SimpleNamespace(**{k: v for k, v in locals().items() if k not in ('settings')})

def _wire_runs(c: SimpleNamespace, settings: Settings):
    "The Runs tab's events: list and open runs, filter and step through trajectories."
    acc_plot, filt, metrics, next_b, open_btn = c.acc_plot, c.filt, c.metrics, c.next_b, c.open_btn
    pos, prev_b, r_state, r_status, refresh = c.pos, c.prev_b, c.r_state, c.r_status, c.refresh
    runs, tool_plot, traj_html = c.runs, c.tool_plot, c.traj_html
    show_outs = [r_state, pos, r_status, traj_html]
    refresh.click(lambda: gr.update(choices=list_names(settings.runs_root, runs=True, depth=2)), None, runs,
                  api_name="list_runs", queue=False)
    open_outs = [metrics, acc_plot, tool_plot] + show_outs
    open_btn.click(
        guarded(partial(runs_open, settings), open_outs, r_status),
        [runs, filt],
        open_outs,
        api_name="open_runs",
    )
    filt.change(
        guarded(lambda st, f: runs_show(settings, st, f, 1), show_outs, r_status, "runs_show"),
        [r_state, filt],
        show_outs,
        api_visibility="private",
    )
    pos.submit(
        guarded(partial(runs_show, settings), show_outs, r_status),
        [r_state, filt, pos],
        show_outs,
        api_name="show_trajectory",
    )
    prev_b.click(
        guarded(partial(runs_step, settings, delta=-1), show_outs, r_status),
        [r_state, filt, pos],
        show_outs,
        api_visibility="private",
    )
    next_b.click(
        guarded(partial(runs_step, settings, delta=1), show_outs, r_status),
        [r_state, filt, pos],
        show_outs,
        api_visibility="private",
    )

def _annotate_tab(settings: Settings) -> SimpleNamespace:
    "The Annotate tab's components: log in, queue a run, label a trajectory, agreement."
    from astra_wb.labels import SUBTAG_TITLES, label_choices
    n_state = gr.State(None)
    overlap0, k0 = ann_config(settings)
    with gr.Row():
        who = gr.Textbox(label="annotator", max_lines=1, min_width=120)
        login = gr.Button("Log in", min_width=80)
        q_run = gr.Dropdown(list_names(settings.runs_root, runs=True, depth=2), allow_custom_value=True,
                            label="queue a run for labelling", min_width=160)
        overlap = gr.Slider(
            0,
            1,
            overlap0,
            step=0.05,
            label="share labelled twice (for agreement)",
            min_width=160,
            elem_id="awb-overlap",
        )
        ov_k = gr.Number(k0, precision=0, label="annotators each", min_width=80)
        q_btn = gr.Button("Queue run", min_width=90)
    n_status = gr.Markdown(elem_classes="awb-status", elem_id="awb-ann-status")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            n_html = gr.HTML()
        with gr.Column(scale=2, min_width=320):
            label = gr.Radio(
                label_choices(), label="label (keys 1-8; Enter = save & next)", elem_id="awb-label"
            )
            label_desc = gr.Markdown(
                "Pick the label that fits; its description shows here.", elem_id="awb-label-desc"
            )
            subtags = gr.CheckboxGroup(
                [(t, c) for c, t in SUBTAG_TITLES.items()], label="sub-tags", visible=False
            )
            with gr.Row():
                save_next = gr.Button("Save & next ⏎", variant="primary", elem_id="awb-save-next")
                save, skip = gr.Button("Save", min_width=70), gr.Button("Skip", min_width=70)
            saved = gr.Markdown(elem_id="awb-saved")
            with gr.Accordion("note, turn, and what each label means", open=False):
                note = gr.Textbox(label="note (required for 'Other')", lines=2)
                turn = gr.Number(0, precision=0, label="turn it refers to (0: the whole trajectory)")
                gr.Markdown(label_help(), elem_id="awb-label-help")
            nxt = gr.Button("Next trajectory", size="sm")
    with gr.Accordion("Agreement", open=True):
        agr_btn = gr.Button("Compute agreement", size="sm")
        agr_txt, agr_plot = gr.Textbox(label="summary", lines=3, elem_id="awb-agreement"), gr.Plot()
    return SimpleNamespace(**{k: v for k, v in locals().items() if k not in ('settings')})

def _wire_annotate(c: SimpleNamespace, settings: Settings):
    "The Annotate tab's events: log in, queue, next / skip, save, agreement."
    agr_btn, agr_plot, agr_txt, label, label_desc = c.agr_btn, c.agr_plot, c.agr_txt, c.label, c.label_desc
    login, n_html, n_state, n_status, note, nxt = c.login, c.n_html, c.n_state, c.n_status, c.note, c.nxt
    ov_k, overlap, q_btn, q_run, save, save_next = c.ov_k, c.overlap, c.q_btn, c.q_run, c.save, c.save_next
    saved, skip, subtags, turn, who = c.saved, c.skip, c.subtags, c.turn, c.who
    def _login(name, request: gr.Request):   # a real function: gradio injects the request by annotation
        return ann_login(settings, name, request)
    login.click(
        guarded(_login, [n_state, n_status], n_status, "login"), [who], [n_state, n_status], api_name="login"
    )
    who.submit(
        guarded(_login, [n_state, n_status], n_status, "login"),
        [who],
        [n_state, n_status],
        api_visibility="private",
    )
    q_btn.click(
        guarded(partial(ann_queue, settings), [n_status], n_status),
        [q_run, overlap, ov_k],
        [n_status],
        api_name="queue_run",
    )
    blank = dict(fn=lambda: (None, gr.update(value=[], visible=False), "", 0, ""), inputs=None,
                 outputs=[label, subtags, note, turn, saved], api_visibility="private")
    next_outs = [n_state, n_status, n_html]
    nxt.click(guarded(partial(ann_next, settings), next_outs, n_status), [n_state], next_outs,
              api_name="next_trajectory").then(**blank)
    skip.click(
        guarded(partial(ann_skip, settings), next_outs, n_status), [n_state], next_outs, api_name="skip"
    ).then(**blank)
    label.change(subtag_update, [label], [subtags], api_visibility="private", queue=False)
    label.change(label_description, [label], [label_desc], api_visibility="private", queue=False)
    save_outs = [n_state, saved]
    save.click(lambda: "saving…", None, saved, api_visibility="private").then(
        guarded(partial(ann_save, settings), save_outs, saved),
        [n_state, label, subtags, note, turn],
        save_outs,
        api_name="save_label",
    )
    sn_outs = [n_state, n_status, n_html, saved, label, subtags, note, turn]
    save_next.click(lambda: "saving…", None, saved, api_visibility="private").then(
        guarded(partial(ann_save_next, settings), sn_outs, saved),
        [n_state, label, subtags, note, turn],
        sn_outs,
        api_name="save_and_next",
    )
    agr_btn.click(
        guarded(partial(ann_agreement, settings), [agr_txt, agr_plot], agr_txt),
        None,
        [agr_txt, agr_plot],
        api_name="agreement",
    )

def create_app(settings: Settings | None = None) -> gr.Blocks:
    "The workbench UI wired to the library (launch it with `main`)."
    settings = settings or load_settings()
    sims = tuple(dict.fromkeys([settings.default_simulator, *SIMULATORS]))
    pols = tuple(dict.fromkeys([settings.default_policy, *POLICIES]))
    with gr.Blocks(title="astra-wb") as demo:
        gr.Markdown("### astra-wb · thinking with imagination", elem_id="awb-title")
        with gr.Tab("Simulator", id="simulator"):
            _wire_simulator(_simulator_tab(settings, sims), settings, sims)
        with gr.Tab("Agent", id="agent"):
            _wire_agent(_agent_tab(settings, sims, pols), settings, sims, pols)
        with gr.Tab("Runs", id="runs"):
            _wire_runs(_runs_tab(settings), settings)
        with gr.Tab("Annotate", id="annotate", elem_id="awb-annotate"):
            _wire_annotate(_annotate_tab(settings), settings)
    return demo

def _answer_nth(i: int, st, reasoning):
    "The i-th option's button: answer with its letter."
    traj = (st or {}).get("traj")
    letters = list(traj.sample.options) if traj else []
    return human_answer(st, reasoning, letters[i] if i < len(letters) else "")

# ----------------------------------------------------------------------------- launch
def parse_auth(spec: str) -> list[tuple[str, str]] | None:
    "'user:password[,user2:password2]' -> [(user, password), ...]; empty -> None (no auth)."
    pairs = [p.strip() for p in (spec or "").split(",") if p.strip()]
    if not pairs:
        return None
    out = []
    for p in pairs:
        user, sep, pw = p.partition(":")
        if not sep or not user or not pw:
            raise ValueError("app_auth: expected 'user:password[,user2:password2]'")
        out.append((user, pw))
    return out

def main(argv: list[str] | None = None) -> int:
    "`astra-wb app`: launch the workbench (binds 127.0.0.1 unless settings or --host say otherwise)."
    p = argparse.ArgumentParser(prog="astra-wb app", description="Launch the Gradio workbench.")
    p.add_argument("--settings", help="settings.ini to read (default: ./settings.ini)")
    p.add_argument("--host", help="interface to bind (default from settings: 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default from settings)")
    p.add_argument(
        "--data-root",
        help="benchmarks and synthetic benches; the app reads files only under it and --runs-root",
    )
    p.add_argument("--runs-root", help="run folders (Runs and Annotate tabs)")
    p.add_argument("--label-db", help="the annotators' SQLite label store")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    s = load_settings(a.settings)
    for field, val in [("app_host", a.host), ("app_port", a.port), ("data_root", a.data_root),
                       ("runs_root", a.runs_root), ("label_db", a.label_db)]:
        if val is not None:
            setattr(s, field, val)
    try:
        auth = parse_auth(s.app_auth)
    except ValueError as e:
        print(f"astra-wb app: {e}", file=sys.stderr)
        return 2
    if s.app_host not in ("127.0.0.1", "localhost", "::1") and not auth:
        print(
            f"astra-wb app: warning: binding {s.app_host} without auth exposes the workbench to the network",
            file=sys.stderr,
        )
    for name in ("data_root", "runs_root"):
        if not Path(getattr(s, name)).is_dir():
            print(
                f"astra-wb app: warning: {name} {getattr(s, name)} is not a folder (nothing to list there yet)",
                file=sys.stderr,
            )
    import socket
    if int(s.app_port) == 0:   # any free port (gradio itself cannot bind port 0)
        with socket.socket() as sock:
            sock.bind((s.app_host, 0))
            s.app_port = sock.getsockname()[1]
    else:
        with socket.socket() as sock:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
            )  # as the server will: TIME_WAIT is no conflict
            try:
                sock.bind((s.app_host, int(s.app_port)))
            except OSError as e:
                print(
                    f"astra-wb app: cannot listen on {s.app_host}:{s.app_port} ({e.strerror}); pick another --port",
                    file=sys.stderr,
                )
                return 2
    from astra_wb.serve import app_kwargs, limit_handlers
    # handlers get a time limit; with auth, AuthGate answers every unauthenticated request before Gradio does
    limit_handlers(create_app(s), s.app_timeout_s).queue(default_concurrency_limit=2).launch(
        server_name=s.app_host,
        server_port=int(s.app_port),
        auth=auth,
        max_file_size=f"{int(s.max_upload_mb)}mb",
        css=CSS,
        js=APP_JS,
        share=False,
        inbrowser=False,
        show_error=True,
        ssr_mode=False,
        app_kwargs=app_kwargs(),
    )
    return 0

if __name__ == "__main__":
    sys.exit(main())
