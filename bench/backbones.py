"""Frozen audio backbones: SoundNet vs aisfx windows/s on one thread, front end included (real demo sounds).

Both backbones turn the same 1-second 48 kHz windows (cut from the bundled demo library, ``demo/sounds``) into their
features, front end included: aisfx (:class:`~encoders.backbones.AisfxFrontend` + :class:`~encoders.backbones.
AisfxTaps`, the default model's audio backbone) is the baseline, SoundNet (:class:`~encoders.soundnet.
SoundNetFrontend` + :class:`~encoders.soundnet.SoundNetTaps`, each window tiled to 10.98 s) is measured against it.
Runs alternate between the two (medians of the rounds), in fp32 and under bfloat16 autocast (what the pretrained
family uses at inference when the CPU supports it). One torch thread, as ingest embeds.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from common import ROOT, Result, median, parser


def demo_windows(n: int) -> Any:
    """The first ``n`` 1-s windows of the demo library (sorted paths, every window of each file)."""
    import numpy as np

    from encoders.config import AudioConfig
    from soundlib.audio import load_windows

    cfg = AudioConfig()
    rows: list[Any] = []
    for path in sorted((ROOT / "demo" / "sounds").rglob("*")):
        if path.is_file() and path.suffix.lower() in (".wav", ".ogg", ".mp3", ".flac"):
            rows.extend(load_windows(path, cfg)[1])
            if len(rows) >= n:
                break
    return np.stack(rows[:n])


def rate(fn: Callable[[Any], Any], windows: Any, batch: int) -> float:
    """Windows per second of ``fn`` over ``windows`` in batches of ``batch``."""
    t = time.perf_counter()
    for i in range(0, len(windows), batch):
        fn(windows[i:i + batch])
    return len(windows) / (time.perf_counter() - t)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    import torch

    from encoders.backbones import AisfxFrontend, AisfxTaps
    from encoders.config import AudioConfig
    from encoders.soundnet import SoundNetFrontend, SoundNetTaps, min_input_samples

    torch.set_num_threads(1)
    n, rounds, batch = (16, 1, 8) if args.quick else (64, 3, 16)
    cfg = AudioConfig()
    windows = torch.from_numpy(demo_windows(n))
    res = Result("backbones", args.quick, params={"windows": len(windows), "rounds": rounds, "batch": batch,
                                                  "threads": 1, "soundnet_input_samples": min_input_samples()})
    a_front, a_taps = AisfxFrontend(cfg.sample_rate, cfg.window_samples), AisfxTaps()
    s_front, s_taps = SoundNetFrontend(cfg.sample_rate, cfg.window_samples), SoundNetTaps()

    def run(front: Any, taps: Any, bf16: bool) -> Callable[[Any], Any]:
        def fn(w: Any) -> Any:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return taps(front(w))
        return fn

    raw: dict[str, list[float]] = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        fns = {"aisfx": run(a_front, a_taps, bf16), "soundnet": run(s_front, s_taps, bf16)}
        for fn in fns.values():
            fn(windows[:2])  # warm-up (weights loaded, kernels chosen)
        for _ in range(rounds):
            for name, fn in fns.items():
                raw.setdefault(f"{name} {precision}", []).append(rate(fn, windows, batch))
        s, a = median(raw[f"soundnet {precision}"]), median(raw[f"aisfx {precision}"])
        res.add(f"SoundNet features, {precision}", s, "windows/s", baseline=f"aisfx features, {precision}",
                baseline_value=a, ratio=s / a,
                note=f"{len(windows)} demo windows, batch {batch}, 1 thread, medians of {rounds} alternating rounds; "
                     f"per-round SoundNet {[round(x, 1) for x in raw[f'soundnet {precision}']]}, "
                     f"aisfx {[round(x, 1) for x in raw[f'aisfx {precision}']]}")
    res.details["raw_windows_per_s"] = raw
    res.finish()


if __name__ == "__main__":
    main()
