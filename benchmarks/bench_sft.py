"""Cold start of the `small` preset: seconds per SFT step and held-out format validity before and after.

The same code path as `astra-wb sft` (TRL SFTTrainer on expert trajectories tokenised by the rollout's template):
on a CUDA GPU the model trains in bf16, on a CPU in float32 with one torch thread. Prints the device, the steps,
wall and CPU seconds per step, the loss, and greedy format validity on a held-out split (other scenes).

python benchmarks/bench_sft.py [--model small] [--steps 150] [--train 24] [--heldout 8]
"""
import argparse, json, os, sys, tempfile, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="small")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--train", type=int, default=24)
    ap.add_argument("--heldout", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--reasoning", default="last")
    a = ap.parse_args(argv)
    import torch
    from astra_wb.agent import AgentConfig, rollout
    from astra_wb.expert import ExpertPolicy
    from astra_wb.rewards import r_fmt
    from astra_wb.sft import SFTRunConfig, load_policy, make_sft_trainer, policy_rollouts
    from astra_wb.synthqa import generate_bench
    cuda = torch.cuda.is_available()
    if not cuda: torch.set_num_threads(1)
    print("device:", torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    train, held = generate_bench(a.train, seed=1), generate_bench(a.heldout, seed=2)
    teacher = rollout(train, ExpertPolicy(), "reproject", AgentConfig())
    model, proc = load_policy(a.model)
    model = model.to("cuda") if cuda else model
    fmt = lambda: sum(map(r_fmt, policy_rollouts(model, proc, held, max_new_tokens=64, max_turns=3))) / len(held)
    before = fmt()
    cfg = SFTRunConfig(model=a.model, output_dir=tempfile.mkdtemp(), max_steps=a.steps, batch_size=a.batch_size,
                       learning_rate=a.lr, reasoning=a.reasoning, logging_steps=max(1, a.steps // 5))
    tr = make_sft_trainer(cfg, trajs=teacher, model=model, processor=proc)
    t0, c0 = time.perf_counter(), time.process_time()
    tr.train()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    logs = [r for r in tr.state.log_history if "loss" in r]
    after = fmt()
    print(json.dumps(dict(model=a.model, dtype=str(next(model.parameters()).dtype), steps=a.steps, s_per_step=round(wall / a.steps, 3),
                          cpu_s_per_step=round(cpu / a.steps, 3), loss=[round(r["loss"], 3) for r in logs],
                          format_validity_before=before, format_validity_after=after)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
