"""Agent-loop overhead: the share of rollout time spent outside the policy and the simulator.

Rolls out policies with the oracle simulator on the synthetic bench (samples x group size G),
then, as the reference measured in the same run, replays exactly the same policy calls (same
conversations, same batches) and the same simulator calls without the agent loop. Reports:

- share outside policy + simulator, as the loop itself books it (sum of `timings["loop"]` over
  trajectories / sum of `timings["total"]`) and as measured from outside (rollout wall time minus
  the booked policy and simulator time, over the wall time);
- wall time of the rollout / wall time of the bare replay. Caches inside a policy or simulator
  (the expert caches per image object, the oracle per scene) and memory held by a rollout move
  this ratio either way; the "outside" column is the loop's own cost.

Goal: < 5 % outside policy and simulator for a real model. The scripted policy costs nothing, so
its row is the worst case (the loop compared with the simulator alone); the "no work" row (Direct
mode, a free policy, no simulator) shows the loop's absolute cost per turn.

    python benchmarks/bench_agent_loop.py [--n 32] [--group 4] [--hf] [--expert]
"""
import argparse
import time

from astra_wb.agent import AgentConfig, rollout
from astra_wb.motion import Motion
from astra_wb.policies import ScriptedPolicy, get_policy
from astra_wb.protocol import TOOLS, Invoke, Trajectory, build_messages, render_answer, render_tool_call


def scripted_for(samples):
    "Three calls (turn, move, pitch), then an answer: the most simulator work the limits allow."
    out = {}
    for s in samples:
        n = len(s.images)
        out[s.id] = [render_tool_call(Invoke(1, Motion.from_tool("turn_left", 60), "Look left.")),
                     render_tool_call(Invoke(n + 1, Motion.from_tool("move_forward", 0.5), "Step closer.")),
                     render_tool_call(Invoke(n + 2, Motion.from_tool("pitch_down", 15), "Look down.")),
                     render_answer("A", "Done.")]
    return ScriptedPolicy(out)


def _fresh_images(messages, copies):
    """The messages with each image replaced by its own copy, one copy per original across turns: a policy
    that caches per image object gets the same cache hits as in the rollout, but not the rollout's cache."""
    out = []
    for m in messages:
        if isinstance(m["content"], list):
            m = dict(m, content=[dict(p, image=copies.setdefault(id(p["image"]), (p["image"].copy(), p["image"]))[0])
                                 if "image" in p else p for p in m["content"]])
        out.append(m)
    return out


def replay(trajs, policy, simulator, config):
    "The same policy batches and simulator calls as the rollout, without the loop: (policy s, simulator s)."
    max_turns = max(len(t.turns) for t in trajs)
    t_pol = t_sim = 0.0
    kept, copies = [], {}   # keep the outputs alive, as a rollout does (fresh pages cost time too)
    for k in range(max_turns):
        live = [t for t in trajs if len(t.turns) > k]
        convs = []
        for t in live:   # the conversation each trajectory had before turn k (built outside the timing)
            partial = Trajectory(t.sample, t.mode, t.forced_k, t.turns[:k])
            convs.append(_fresh_images(build_messages(partial, config.max_tool_rounds), copies))
        kw = dict(temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_new_tokens, seed=config.seed + k)
        if getattr(policy, "needs_sample_ids", False):
            kw.update(sample_ids=[t.sample.id for t in live], group_indices=[t.meta["group_index"] for t in live])
        t0 = time.perf_counter(); kept.append(policy.respond(convs, tools=None if config.mode == "direct" else TOOLS, **kw))
        t_pol += time.perf_counter() - t0
        for t in live:
            turn = t.turns[k]
            if turn.observation is not None:
                obs = [x.observation for x in t.turns[:k] if x.observation is not None]
                t0 = time.perf_counter()
                kept.append(simulator.imagine(t.sample, obs, turn.action.reference_image, turn.action.motion))
                t_sim += time.perf_counter() - t0
    return t_pol, t_sim


def measure(name, samples, policy, make_simulator, config, repeats=2):
    "Roll out, then replay the same calls on a fresh simulator (both start with cold caches); best of `repeats`."
    runs, bares = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trajs = rollout(samples, policy, make_simulator(), config)
        runs.append((time.perf_counter() - t0, trajs))
        bares.append(sum(replay(trajs, policy, make_simulator(), config)))
    wall, trajs = min(runs, key=lambda r: r[0])
    pol, sim, loop, total = (sum(t.timings[k] for t in trajs) for k in ("policy", "simulator", "loop", "total"))
    turns, calls = sum(len(t.turns) for t in trajs), sum(t.n_tool_calls for t in trajs)
    print(f"{name:<22} {len(trajs):>5} {turns:>6} {calls:>6} {wall:>8.3f} {pol:>8.3f} {sim:>8.3f} "
          f"{100 * loop / total:>8.2f}% {100 * (wall - pol - sim) / wall:>8.2f}% {wall / min(bares):>8.3f}x "
          f"{1e3 * loop / turns:>8.3f}")
    return loop / total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="synthetic questions")
    ap.add_argument("--group", type=int, default=4, help="group size G")
    ap.add_argument("--hf", action="store_true", help="also the tiny random Qwen3-VL (hf backend)")
    ap.add_argument("--expert", action="store_true", help="also the expert policy")
    a = ap.parse_args()
    from astra_wb.simulators import get_simulator
    from astra_wb.synthqa import generate_bench
    samples = generate_bench(a.n, seed=0)
    sim = lambda: get_simulator("oracle")
    rollout(samples[:2], scripted_for(samples[:2]), sim(), AgentConfig())   # warm up (numba compilation)
    print(f"{a.n} synthetic questions x G={a.group}, oracle simulator; reference: the same calls replayed without the loop")
    print(f"{'policy':<22} {'trajs':>5} {'turns':>6} {'calls':>6} {'wall s':>8} {'policy s':>8} {'sim s':>8} "
          f"{'loop':>9} {'outside':>9} {'vs bare':>9} {'ms/turn':>8}")
    measure("scripted (worst case)", samples, scripted_for(samples), sim, AgentConfig(group_size=a.group))
    measure("no work (direct)", samples, ScriptedPolicy([render_answer("A", "x")]), sim, AgentConfig(mode="direct", group_size=a.group))
    if a.hf:
        import tempfile
        from astra_wb.tiny_vlm import build_tiny_qwen3vl
        path = build_tiny_qwen3vl(tempfile.mkdtemp() + "/tiny")
        measure("tiny Qwen3-VL (hf)", samples[:8], get_policy(f"hf:{path}", batch_size=32), sim,
                AgentConfig(group_size=a.group, temperature=1.0, max_new_tokens=32, max_turns=4))
    if a.expert:
        measure("expert", samples, get_policy("expert"), sim, AgentConfig(group_size=a.group))


if __name__ == "__main__":
    main()
