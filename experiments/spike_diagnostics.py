"""Where does a late loss spike come from? Train a preset step by step with the trainer's own
update (⊥Grad, Grokfast filter, AdamW, weight-norm floor) and log, at every step, what each
stage did to the gradient and the weights.

    python -m experiments.spike_diagnostics mod-add-fast --threads 2 --steps 1500 \
        --set model.seed=1000 --out diag.jsonl --print-from 1380

It evaluates nothing along the way, so `train.lr_decay_at_val_acc` (which acts at
checkpoints) never fires: it trains `mod-add-fast` as it was before that decay, whose seed
1000 spikes at step ~1,428 on 2 threads (docs/benchmarks.md has the table this printed).
`--set train.adam_eps=1e-6` is the eps cap tried first (seed 1000, 1 thread: a spike at 364).

Per step (the update that makes step + 1; the loss is measured before it, on the weights of
`step`): the float64 training loss, the fraction of training rows whose float32 softmax is
exactly one-hot, the smallest logit margin; the norms of the raw gradient, of what ⊥Grad
left, of the Grokfast EMA and of the filtered gradient, and the cosine between this step's
filtered gradient and the last one (near -1: the update overshoots along a direction, step
after step); Adam's update u = m̂/(√v̂ + eps) (its RMS and max over elements: 1 means "every
element moves lr"), the median step per unit gradient lr/(√v̂ + eps), the ratio g²/v̂ of
the gradient that entered Adam to its second-moment estimate, the share of elements where
eps is larger than √v̂; the change of the weights (norm, relative) and the floor's
rescaling factor. Nothing is written but the JSON lines (the trainer gets an empty
temporary folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _norm(tensors) -> float:
    return float(sum(t.double().pow(2).sum() for t in tensors)) ** 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per step")
    parser.add_argument("--print-from", type=int, default=0, help="print steps from here")
    args = parser.parse_args(argv)

    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    from interp.cli import resolve_config
    from interp.training import (  # the trainer's own update functions, wherever they live
        Trainer,
        orthogonalize_grads_,
        raise_norm_to_floor_,
        total_norm,
    )

    config = resolve_config(args.preset, [f"train.steps={args.steps}", *args.overrides])
    trainer = Trainer(config, Path(tempfile.mkdtemp(prefix="spike_diag_")), progress=False)
    train = config.train
    params = trainer.params
    opt = trainer.optimizer
    beta1, beta2 = train.beta1, train.beta2
    eps = opt.param_groups[0]["eps"]
    previous = None
    trainer.model.train()
    with open(args.out, "w") as handle:
        for step in range(args.steps):
            tokens, labels = trainer.sampler.next_batch()
            logits = trainer.forward(trainer.model, tokens)
            labels = labels.reshape(-1)
            loss = trainer.loss_fn(logits, labels)
            row: dict = {"step": step, "loss": loss.item()}
            with torch.no_grad():
                lg = logits.detach()
                probs32 = torch.softmax(lg.float(), -1)
                row["frac_onehot_f32"] = float((probs32.max(-1).values == 1.0).float().mean())
                correct = lg.gather(1, labels[:, None])[:, 0]
                others = lg.scatter(1, labels[:, None], float("-inf")).max(-1).values
                margin = correct - others
                row["min_margin"] = float(margin.min())
                row["median_margin"] = float(margin.median())
                row["max_abs_logit"] = float(lg.abs().max())
                row["train_acc"] = float((margin > 0).float().mean())
                per_row = torch.nn.functional.cross_entropy(lg.double(), labels, reduction="none")
                row["max_row_loss"] = float(per_row.max())
                row["loss_share_top10"] = float(
                    per_row.topk(10).values.sum() / per_row.sum().clamp_min(1e-300)
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for p in params.values() if p.grad is not None]
            row["g_raw"] = _norm(grads)
            if train.orthogonal_grad:
                orthogonalize_grads_(params)
            row["g_perp"] = _norm(grads)
            if trainer.grad_filter is not None:
                trainer.grad_filter.apply(params)
                mu = getattr(trainer.grad_filter, "mu", {})
                row["ema"] = _norm(mu.values()) if mu else 0.0
            row["g_in"] = _norm(grads)
            flat = torch.cat([g.detach().reshape(-1).double() for g in grads])
            # cos(g_t, g_{t-1}) near -1: the update overshoots along a direction, step to step.
            row["cos_prev"] = (
                float(flat @ previous / (flat.norm() * previous.norm()).clamp_min(1e-300))
                if previous is not None
                else 0.0
            )
            previous = flat
            if train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params.values(), train.grad_clip)
            before = {n: p.detach().clone() for n, p in params.items()}
            lr = opt.param_groups[0]["lr"]
            opt.step()
            with torch.no_grad():
                t = step + 1
                usq = umax = ratio_num = ratio_den = 0.0
                n_el = n_eps = 0
                eff = []
                for name, p in params.items():
                    if p.grad is None:
                        continue
                    st = opt.state[p]
                    m_hat = st["exp_avg"].double() / (1 - beta1**t)
                    v_hat = st["exp_avg_sq"].double() / (1 - beta2**t)
                    u = m_hat / (v_hat.sqrt() + eps)
                    usq += float(u.pow(2).sum())
                    umax = max(umax, float(u.abs().max()))
                    g = p.grad.double()
                    ratio_num += float(g.pow(2).sum())
                    ratio_den += float(v_hat.sum())
                    n_el += u.numel()
                    n_eps += int((v_hat.sqrt() < eps).sum())
                    eff.append((lr / (v_hat.sqrt() + eps)).reshape(-1).float())
                row["lr"] = lr
                row["u_rms"] = (usq / n_el) ** 0.5
                row["u_max"] = umax
                row["g2_over_v"] = ratio_num / max(ratio_den, 1e-300)
                row["rms_sqrt_v"] = (ratio_den / n_el) ** 0.5
                row["frac_eps_dominated"] = n_eps / n_el
                row["median_eff_lr"] = float(torch.cat(eff).median())
                row["dw_adam"] = _norm(p.detach() - before[n] for n, p in params.items())
            norm_before_floor = total_norm(params)
            if trainer.norm_floor:
                if trainer.norm_floor_armed:
                    raise_norm_to_floor_(params, trainer.norm_floor)
                else:
                    trainer.norm_floor_armed = total_norm(params) >= trainer.norm_floor
            norm_after = total_norm(params)
            row["floor_scale"] = norm_after / norm_before_floor
            row["w_norm"] = norm_after
            with torch.no_grad():
                row["dw_total"] = _norm(p.detach() - before[n] for n, p in params.items())
            row["dw_rel"] = row["dw_total"] / norm_after
            trainer.scheduler.step()
            trainer.step += 1
            handle.write(json.dumps(row) + "\n")
            if step >= args.print_from:
                print(
                    f"{step:5d} loss {row['loss']:.2e} acc {row['train_acc']:.4f} "
                    f"onehot {row['frac_onehot_f32']:.3f} minmarg {row['min_margin']:7.2f} "
                    f"top10 {row['loss_share_top10']:.2f} g {row['g_raw']:.2e} "
                    f"g_perp {row['g_perp']:.2e} ema {row.get('ema', 0):.2e} "
                    f"g_in {row['g_in']:.2e} cos {row['cos_prev']:+.2f} "
                    f"g2/v {row['g2_over_v']:.2e} "
                    f"eff_lr {row['median_eff_lr']:.1e} "
                    f"u_rms {row['u_rms']:.3f} u_max {row['u_max']:8.2f} "
                    f"eps% {row['frac_eps_dominated']:.3f} dw {row['dw_total']:.3f} "
                    f"floor {row['floor_scale']:.5f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
