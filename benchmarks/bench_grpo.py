"""Seconds per GRPO step: astra-wb's agent loop inside GRPOTrainer vs TRL's built-in tool loop, same model and data.

4 prompts x 4 generations, up to 2 tool rounds, on the tiny random Qwen3-VL (CPU) with the oracle simulator.
The tiny model is first fitted for a few seconds to always call the simulator, so both loops really run
2 tool rounds per rollout (3 generations, 2 simulator calls, the imagined images in the forward pass).
TRL's loop gets the simulator through `environment_factory` (an environment whose public method is the
`world_simulator` tool), which is TRL's built-in multi-turn tool path. Runs alternate (ours, TRL, ours, ...)
so that machine load affects both; the figure is the median step time, warm-up step excluded.

python benchmarks/bench_grpo.py [--steps 3] [--rounds 2]
"""
import argparse, copy, os, statistics, sys, tempfile, time
from pathlib import Path
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def fit_to_call(model, processor, samples, call_text, steps=120, lr=3e-3):
    "Teacher-force `call_text` as the reply to every prompt (and after a tool response) until the model emits it."
    import torch
    from astra_wb.protocol import Trajectory, Turn, Invoke, Observation, build_messages, TOOLS
    from astra_wb.motion import Motion
    from astra_wb.hf import TokenPolicy
    pol = TokenPolicy(model, processor)
    inv = Invoke(1, Motion("yaw", 30.0), "look")
    batches = []
    for s in samples:
        obs = Observation(s.images[0], len(s.images) + 1, 1, inv.motion, "oracle")
        traj = Trajectory(s, turns=[Turn(call_text, inv, observation=obs), Turn(call_text, inv, observation=obs), Turn(call_text, inv)])
        msgs = build_messages(traj, 2)
        ids, mask, images, _ = pol.encode(msgs, TOOLS, add_generation_prompt=False)
        ids, mask = ids + [pol.eos_id], mask + [1]   # the last turn's end-of-turn token is the template's
        batches.append((ids, mask, images))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        ids, mask, images = batches[step % len(batches)]
        pv, grid = pol.pixels(images)
        x = torch.tensor([ids])
        out = model(input_ids=x, attention_mask=torch.ones_like(x), pixel_values=pv, image_grid_thw=grid,
                    mm_token_type_ids=(x == pol.image_token_id).long())
        logits = out.logits[0, :-1]
        target, m = x[0, 1:], torch.tensor(mask[1:], dtype=torch.bool)
        loss = torch.nn.functional.cross_entropy(logits[m], target[m])
        opt.zero_grad(); loss.backward(); opt.step()
    return float(loss)


class StepTimer:
    def __init__(self): self.times, self.t0 = [], None
    def callback(self):
        from transformers import TrainerCallback
        timer = self
        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw): timer.t0 = time.perf_counter()
            def on_step_end(self, args, state, control, **kw): timer.times.append(time.perf_counter() - timer.t0)
        return CB()


def ours(model, processor, samples, steps, out):
    from astra_wb.rl import TrainConfig, make_trainer
    from astra_wb.simulators import get_simulator
    cfg = TrainConfig(output_dir=out, max_steps=steps, phase1_steps=steps, prompts_per_step=4, num_generations=4,
                      max_tool_rounds=2, max_turns=3, max_new_tokens=256, learning_rate=1e-6, save_steps=10_000,
                      temperature=1.0)
    timer = StepTimer()
    tr = make_trainer(cfg, samples=samples, model=model, processor=processor, simulator=get_simulator("oracle"), callbacks=[timer.callback()])
    tr.train()
    logs = [r for r in tr.state.log_history if "loss" in r]
    return timer.times, sum(r["astra/calls_per_row"] for r in logs) / len(logs)


def vision_ids(processor):
    from astra_wb.hf import vision_token_ids
    return vision_token_ids(processor)


def trl_builtin(model, processor, samples, steps, out):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    from astra_wb.protocol import Trajectory, build_messages, extract_answer, Observation
    from astra_wb.motion import Motion
    from astra_wb.simulators import get_simulator
    by_id, sim = {s.id: s for s in samples}, get_simulator("oracle")

    class ImagineEnv:
        def reset(self, sample_id=None, **kw):
            self.sample, self.observations = by_id[sample_id], []
            return None

        def world_simulator(self, reference_image: int, motion_type: str, value: float) -> list:
            """Imagine the view after a camera motion from one of the images so far.

            Args:
                reference_image: 1-based number of the image whose viewpoint the motion starts from.
                motion_type: move_forward, move_backward, move_left, move_right, move_up, move_down, turn_left, turn_right, pitch_up or pitch_down.
                value: meters for moves, degrees for turns and pitch.
            """
            obs = sim.imagine(self.sample, self.observations, int(reference_image), Motion.from_tool(motion_type, value).check())
            obs.index = len(self.sample.images) + len(self.observations) + 1
            self.observations.append(obs)
            return [{"type": "text", "text": obs.provenance()}, {"type": "image", "image": obs.image}]

    rows = [{"prompt": [{"role": "system", "content": build_messages(Trajectory(s), 2)[0]["content"]},
                        {"role": "user", "content": s.meta.get("prompt") or s.prompt_text()}],
             "images": list(s.images), "sample_id": s.id, "gold": s.answer} for s in samples]   # TRL puts the images first

    def em(prompts, completions, gold, **kw):
        return [float(extract_answer(c[-1]["content"] if isinstance(c[-1].get("content"), str) else "") == g) for c, g in zip(completions, gold)]

    args = GRPOConfig(output_dir=out, per_device_train_batch_size=16, num_generations=4, max_steps=steps, learning_rate=1e-6,
                      max_completion_length=1024, max_tool_calling_iterations=2, temperature=1.0, gradient_checkpointing=True,
                      save_steps=10_000, report_to=[], remove_unused_columns=False, use_cpu=True, logging_steps=1,
                      lr_scheduler_type="constant", epsilon=0.2, epsilon_high=0.28, beta=0.0, seed=0,
                      generation_kwargs={"suppress_tokens": vision_ids(processor)})   # as our TokenPolicy does
    timer = StepTimer()
    tr = GRPOTrainer(model=model, reward_funcs=[em], args=args, train_dataset=Dataset.from_list(rows),
                     processing_class=processor, environment_factory=ImagineEnv, callbacks=[timer.callback()])
    try: tr.train()
    except Exception as e:   # TRL 1.16's multimodal tool loop can fail when every call of a turn errors (no tool image)
        print(f"TRL built-in loop failed after {len(timer.times)} steps: {type(e).__name__}: {e}")
        if len(timer.times) < 2: raise
    logs = [r for r in tr.state.log_history if "loss" in r] or [{}]
    return timer.times, sum(r.get("tools/call_frequency", 0) for r in logs) / len(logs)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    import torch
    from astra_wb.tiny_vlm import cached_tiny_qwen3vl, load_tiny
    from astra_wb.synthqa import generate_bench
    from astra_wb.protocol import Invoke, render_tool_call
    from astra_wb.motion import Motion
    torch.manual_seed(0)
    samples = generate_bench(4, seed=0)
    base, processor = load_tiny(cached_tiny_qwen3vl())
    call = render_tool_call(Invoke(1, Motion("yaw", 30.0), "I should look to the right."))
    cache = Path(os.environ.get("ASTRA_WB_CACHE") or Path.home() / ".cache" / "astra-wb") / "bench-grpo-fitted-tiny.pt"
    if cache.exists():
        base.load_state_dict(torch.load(cache)); print(f"fitted tiny model from {cache.name}")
    else:
        t0 = time.perf_counter()
        loss = fit_to_call(base, processor, samples, call)
        print(f"fitted the tiny model to call the simulator: loss {loss:.3f} in {time.perf_counter() - t0:.1f} s")
        cache.parent.mkdir(parents=True, exist_ok=True); torch.save(base.state_dict(), cache)
    state = copy.deepcopy(base.state_dict())
    res = {"astra-wb agent loop": [], "TRL built-in tool loop": []}
    calls = {k: [] for k in res}
    for r in range(a.rounds):
        for name, fn in (("astra-wb agent loop", ours), ("TRL built-in tool loop", trl_builtin)):
            model = copy.deepcopy(base); model.load_state_dict(state)
            times, c = fn(model, processor, samples, a.steps, tempfile.mkdtemp())
            res[name] += times[1:]; calls[name].append(c)
            print(f"round {r}: {name}: step seconds {[round(t, 2) for t in times]}, tool calls per row {c:.2f}")
    med = {k: statistics.median(v) for k, v in res.items()}
    print("\n| loop | median s/step | tool calls per row |\n|---|---|---|")
    for k in res: print(f"| {k} | {med[k]:.2f} | {statistics.mean(calls[k]):.2f} |")
    ratio = med["astra-wb agent loop"] / med["TRL built-in tool loop"]
    print(f"\nratio astra-wb / TRL built-in: {ratio:.2f}x (goal <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
