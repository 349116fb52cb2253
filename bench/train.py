"""Training speed: pairs/s of one optimisation step, and achieved GFLOP/s vs this machine's matmul peak.

For each model (m1 and m5 at the paper's full width and 224 px, m5 at the fast width 0.25 and 112 px, and the
pretrained family's heads on cached backbone features) one training step is timed exactly as ``train/loop.py``
runs it: image normalisation, encoders under bf16 autocast with channels-last tensors (the training default) or in
fp32, ``pair_loss`` (labels for the BCE family), ``backward`` and an SGD step (Nesterov, momentum 0.9, weight decay
1e-4). Inputs are random (uint8 frames, log-mels, packed features): speed does not depend on the values.

The FLOPs of one step (forward + backward) are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls
and convolutions); achieved GFLOP/s = those FLOPs / step time. The baseline is the machine's matmul peak measured in
the same run: the best of several 2048 x 2048 ``torch.mm`` in fp32 before and after the steps (and in bf16, for
the bf16 rows' note). The two precisions of a model alternate step by step, so load changes on this shared machine
hit both alike.

Run: ``.venv/bin/python bench/train.py [--quick]`` -> ``bench/results/train.json``.
"""

from __future__ import annotations

import time
from typing import Any

from common import FAST_M5, PRETRAINED, Result, median, model_label, parser

#: (registry name, overrides, batch of the timed step (full run), batch (quick run))
CONFIGS: list[tuple[str, dict[str, Any], int, int]] = [
    ("m1-baseline-linear-bce", {}, 4, 2),
    ("m5-attention-linear-infonce", {}, 4, 2),
    (FAST_M5[0], FAST_M5[1], 32, 8),
    (PRETRAINED[0], PRETRAINED[1], 128, 128),
]


def matmul_peak(dtype: Any, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of ``torch.mm`` of two ``n`` x ``n`` matrices of ``dtype`` (after a warm-up)."""
    import torch

    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


class Step:
    """One ``train.epoch.train_step`` of a model on a fixed random batch."""

    def __init__(self, name: str, overrides: dict[str, Any], batch: int, precision: str) -> None:
        import torch

        from encoders.registry import create_model
        from train.epoch import make_optimizer

        torch.manual_seed(0)
        self.model = create_model(name, seed=0, **overrides).train()
        self.precision = precision
        self.batch = batch
        cfg = self.model.config
        self.pretrained = cfg.family == "pretrained"
        if self.pretrained:  # heads on cached features: packed backbone outputs
            from encoders.pretrained import audio_layout, image_layout

            self.images = torch.randn(batch, image_layout(self.model.spec).size).abs()
            self.feats = torch.randn(batch, audio_layout(self.model.spec).size).abs()
        else:
            self.images = torch.randint(0, 256, (batch, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8)
            self.feats = torch.randn(batch, cfg.audio.n_mels, cfg.audio.frames) * 2 - 8
        self.labels = None if cfg.contrastive else (torch.arange(batch) % 2)
        if precision == "bf16":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = make_optimizer(self.model, cfg.lr)

    def __call__(self) -> float:
        from train.epoch import train_step

        return train_step(self.model, self.opt, self.images, self.feats, self.labels, self.precision)

    def flops(self) -> int:
        """FLOPs of one step (forward + backward), counted on the fp32 graph."""
        from torch.utils.flop_counter import FlopCounterMode

        precision, self.precision = self.precision, "fp32"
        try:
            with FlopCounterMode(display=False) as counter:
                self()
        finally:
            self.precision = precision
        return int(counter.get_total_flops())


def main() -> None:
    import torch

    args = parser(__doc__.splitlines()[0]).parse_args()
    res = Result("train", args.quick, params={"repeats_full_width": 1 if args.quick else 3,
                                              "repeats_small": 2 if args.quick else 8, "warmup_steps": 1,
                                              "configs": [{"name": n, "overrides": o, "batch": qb if args.quick else b}
                                                          for n, o, b, qb in CONFIGS]})
    peaks = {"fp32": [], "bf16": []}  # measured before and after the steps; the best counts
    for dtype in ("fp32", "bf16"):
        peaks[dtype].append(matmul_peak(getattr(torch, {"fp32": "float32", "bf16": "bfloat16"}[dtype])))
    rows = []
    for name, overrides, batch, quick_batch in CONFIGS:
        b = quick_batch if args.quick else batch
        label = model_label(name, overrides) + (" heads (cached features)" if name == PRETRAINED[0] else "")
        full_width = name != PRETRAINED[0] and "width" not in overrides
        repeats = (1 if args.quick else 3) if full_width else (2 if args.quick else 8)
        # FLOPs are the same for both precisions (counted on the fp32 ops) and linear in the batch for these models
        # (the InfoNCE logits matrix is B x B x 128, negligible), so they are counted on a batch of at most 4
        fb = min(b, 4)
        flops = Step(name, overrides, fb, "fp32").flops() * b // fb
        steps = {p: Step(name, overrides, b, p) for p in ("bf16", "fp32")}
        times: dict[str, list[float]] = {p: [] for p in steps}
        for step in steps.values():
            step()  # warm-up (oneDNN builds its kernels)
        for _ in range(repeats):  # the two precisions alternate, so load changes hit both
            for p, step in steps.items():
                t = time.perf_counter()
                step()
                times[p].append(time.perf_counter() - t)
        rows.append((label, b, flops, times))
        del steps
    for dtype in ("fp32", "bf16"):
        peaks[dtype].append(matmul_peak(getattr(torch, {"fp32": "float32", "bf16": "bfloat16"}[dtype])))
    peak32, peak16 = max(peaks["fp32"]), max(peaks["bf16"])
    res.details["matmul_peak_gflops"] = peaks
    for label, b, flops, times in rows:
        for precision, ts in times.items():
            dt = median(ts)
            gflops = flops / dt / 1e9
            res.add(f"train step {label} {precision}", b / dt, "pairs/s",
                    baseline="ratio = achieved GFLOP/s / fp32 matmul peak (torch.mm)",
                    baseline_value=peak32, baseline_unit="GFLOP/s", ratio=gflops / peak32,
                    note=f"batch {b}; {flops / b / 1e9:.2f} GFLOP/pair; achieved {gflops:.1f} GFLOP/s; median of "
                         f"{len(ts)} steps (min {b / max(ts):.3g}, max {b / min(ts):.3g} pairs/s)"
                         + (f"; bf16 matmul peak {peak16:.0f} GFLOP/s" if precision == "bf16" else ""))
            res.details[f"{label} {precision}"] = {"batch": b, "step_s": ts, "flops_per_step": flops,
                                                   "gflops": gflops}
    res.finish()


if __name__ == "__main__":
    main()
