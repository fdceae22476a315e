"""Short GRPO runs on the tiny Qwen3-VL for tests/test_rl*.py (run in-process, under torchrun, or killed mid-run).

python tests/rl_worker.py OUT MAX_STEPS [--kill-at N] [--resume] [--dump-params]
"""
import argparse, hashlib, json, os, signal, sys
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def scripted(samples):
    "Even rows of a batch: call the simulator from image 1, then answer the gold letter; odd rows: the model samples."
    from astra_wb.motion import Motion
    from astra_wb.protocol import Invoke, render_answer, render_tool_call
    call = render_tool_call(Invoke(1, Motion("yaw", 30.0), "Look to the right first."))
    gold = {(s.meta.get("prompt") or s.prompt_text()): s.answer for s in samples}

    def forced(conv, i):
        said = [m["content"] for m in conv if m["role"] == "assistant"]
        if not said: return call if i % 2 == 0 else None
        if said == [call]:
            q = "".join(p.get("text", "") for p in conv[1]["content"] if p.get("type") == "text")
            return render_answer(next(a for k, a in gold.items() if q.endswith(k)), "Now I can see it.")
        return None
    forced.call_text = call
    return forced


def make(out, max_steps, phase1_steps=1, prompts_per_step=2, num_generations=2, callbacks=None, resume=False, seed=0,
         save_steps=2):
    "A trainer on 4 synthetic questions with the oracle simulator; (trainer, config)."
    from astra_wb.tiny_vlm import cached_tiny_qwen3vl, load_tiny
    from astra_wb.rl import TrainConfig, make_trainer
    from astra_wb.simulators import get_simulator
    from astra_wb.synthqa import generate_bench
    samples = generate_bench(4, seed=0)
    model, proc = load_tiny(cached_tiny_qwen3vl())
    model.train()
    cfg = TrainConfig(output_dir=str(out), max_steps=max_steps, phase1_steps=phase1_steps, prompts_per_step=prompts_per_step,
                      num_generations=num_generations, max_turns=2, max_new_tokens=8, learning_rate=1e-3, save_steps=save_steps,
                      seed=seed, resume=resume)
    trainer = make_trainer(cfg, samples=samples, model=model, processor=proc, simulator=get_simulator("oracle"),
                           forced=scripted(samples), callbacks=callbacks)
    return trainer, cfg


def params_digest(model) -> dict:
    import torch
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode()); h.update(p.detach().to(torch.float32).cpu().numpy().tobytes())
    return {"sha256": h.hexdigest(), "sum": float(sum(p.detach().double().sum() for p in model.parameters()))}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("out"); ap.add_argument("max_steps", type=int)
    ap.add_argument("--kill-at", type=int, default=None)
    ap.add_argument("--save-steps", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--dump-params", action="store_true")
    a = ap.parse_args(argv)
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if a.kill_at is not None and state.global_step == a.kill_at: os.kill(os.getpid(), signal.SIGKILL)

    trainer, cfg = make(a.out, a.max_steps, callbacks=[Kill()], resume=a.resume, save_steps=a.save_steps)
    before = params_digest(trainer.model)
    trainer.train()
    if a.dump_params:
        rank = trainer.accelerator.process_index
        d = dict(rank=rank, world=trainer.accelerator.num_processes, before=before, after=params_digest(trainer.model),
                 losses=[r["loss"] for r in trainer.state.log_history if "loss" in r and "step" in r],
                 sample_ids=[t.sample.id for t in trainer.astra.last.get("trajectories", [])])
        with open(os.path.join(a.out, f"params.rank{rank}.json"), "w") as f: json.dump(d, f)
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():   # shut gloo down here: left to interpreter exit, its threads
        dist.barrier()                                   # can abort a rank ("terminate called without an active exception")
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
