"""CLI start-up: wall time of ``soundlib --help`` (a fresh process) vs ``python -c pass`` in the same run.

Goal: ``soundlib --help`` answers in under 0.5 s in total (interpreter start included). The difference to the bare
interpreter is what our imports cost (click, rich, the command modules), so it is reported too, and
``python -X importtime`` names the slowest imports when the goal is missed.

Run: ``.venv/bin/python bench/cli.py [--quick]`` -> ``bench/results/cli.json``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from common import VENV_BIN, Result, median, parser, percentile, run_process

GOAL_S = 0.5


def slowest_imports(cmd: list[str], n: int = 8) -> list[dict[str, object]]:
    """The ``n`` top-level imports with the largest cumulative time under ``-X importtime`` (ms)."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=120)
    rows = []
    for line in proc.stderr.decode(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) <= 1:  # top-level imports only
            rows.append({"module": m.group(4), "cumulative_ms": int(m.group(2)) / 1000})
    return sorted(rows, key=lambda r: -float(r["cumulative_ms"]))[:n]  # type: ignore[arg-type]


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    repeats = 3 if args.quick else 15
    python = sys.executable
    soundlib = str(VENV_BIN / "soundlib")
    cmd_help = [soundlib, "--help"] if os.path.exists(soundlib) else [python, "-m", "cli", "--help"]
    res = Result("cli", args.quick, params={"repeats": repeats, "command": " ".join(cmd_help)})

    # interleave the two so a load spike hits both alike; one untimed run each warms the page cache
    run_process([python, "-c", "pass"])
    run_process(cmd_help)
    t_pass, t_help = [], []
    for _ in range(repeats):
        t_pass.append(run_process([python, "-c", "pass"]))
        t_help.append(run_process(cmd_help))
    p, h = median(t_pass), median(t_help)
    res.add("soundlib --help (wall, median)", h, "s", baseline="python -c pass", baseline_value=p,
            ratio=h / p, goal=f"< {GOAL_S} s total", met=h < GOAL_S,
            note=f"p95 {percentile(t_help, 95):.3f} s; our imports cost {h - p:.3f} s over the bare interpreter")
    res.details = {"help_s": t_help, "pass_s": t_pass,
                   "slowest_imports_help": slowest_imports([python, "-c", "import cli; cli.main(['--help'])"])}
    res.finish()


if __name__ == "__main__":
    main()
