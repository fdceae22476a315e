"""A notebook-first research workbench for thinking with imagination: VLM policies that ask a world simulator for imagined views.

The names a researcher reaches for first are importable from the package itself, e.g.
`astra_wb.load_run("runs/demo/agentic")`. They resolve on first use, so `import astra_wb` stays light
(no torch, transformers or gradio until a backend needs them).
"""
import importlib

__version__ = "0.1.0"

_API = {   # name -> "module:attribute"
    "generate_bench": "astra_wb.synthqa:generate_bench",        # the synthetic spatial-QA bench (list of Sample)
    "get_benchmark": "astra_wb.benchmarks:get_benchmark",       # MMSI-Bench, MindCube, MMSI-Video-Bench, synth files
    "get_simulator": "astra_wb.simulators:get_simulator",       # "oracle", "reproject", "vllm-omni:http://...", ...
    "get_policy": "astra_wb.policies:get_policy",               # "expert", "hf:/path", "openai:http://.../v1#model", ...
    "Motion": "astra_wb.motion:Motion",                         # a camera motion ("forward", 1.5), ("yaw", -30), ...
    "AgentConfig": "astra_wb.agent:AgentConfig",                # Direct / Forced(k) / Agentic and the loop's limits
    "rollout": "astra_wb.agent:rollout",                        # policy x simulator on samples -> trajectories
    "format_trajectory": "astra_wb.agent:format_trajectory",    # a trajectory as readable text
    "EvalConfig": "astra_wb.eval:EvalConfig",                   # one evaluation run's settings
    "run_eval": "astra_wb.eval:run_eval",                       # run (or resume) an evaluation into a run folder
    "load_run": "astra_wb.eval:load_run",                       # a run folder's config, rows and metrics
    "find_runs": "astra_wb.eval:find_runs",                     # the run folders in a folder of runs (runs/demo)
    "load_trajectory": "astra_wb.protocol:load_trajectory",     # one saved trajectory folder
    "run_trajectories": "astra_wb.viz:run_trajectories",        # a run's trajectories
    "trajectory_html": "astra_wb.viz:trajectory_html",          # one trajectory as HTML (display it in Jupyter)
    "table1_rows": "astra_wb.report:table1_rows",               # Table-1-style rows comparing runs
    "format_table": "astra_wb.report:format_table",             # those rows as text
    "write_report": "astra_wb.report:write_report",             # a self-contained HTML report of runs
    "run_demo": "astra_wb.demo:run_demo",                       # the main job (`astra-wb demo`)
    "LabelStore": "astra_wb.annotate:LabelStore",               # the annotators' SQLite label store
}

def __getattr__(name: str):
    if name not in _API: raise AttributeError(f"module 'astra_wb' has no attribute {name!r}")
    module, attr = _API[name].split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value   # resolved once
    return value

def __dir__(): return sorted(list(globals()) + list(_API))

__all__ = sorted(_API)
