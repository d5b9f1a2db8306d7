"""Interleaved A/B of ``step()`` between two trees, in one process.

Both trees' packages are loaded side by side (``sys.modules`` swapped), one
model from each is built with the same settings, and their steps alternate
A, B, B, A, ... so that the machine's load falls on both alike; the ratio of
the median per-step CPU times is what this prints. On a shared machine this is
steadier than timing each tree in its own process (``bench_issue15.py``),
whose absolute figures swing with the load. One caveat: the two models share
the process's memory allocator, so a change to how memory is allocated (buffers
kept between steps, larger or fewer allocations) can show a false ratio; check
such a change with the same tree on both sides, or one model per process.

    python benchmarks/ab_step.py BASE [HEAD] [--steps 800] [--configs 30,100,1000,1000x]
    python benchmarks/ab_step.py BASE [HEAD] --layer-ratio --configs 100,1000
    python benchmarks/ab_step.py BASE [HEAD] --layer-ratio --configs 1000 \
        --steps 100 --repeat 8 --warmup 3

With ``--layer-ratio`` only HEAD is timed: each bank count with the
infrastructure layer off against the same model with it on (issue 15's
target: on / off <= 1.3 at 1,000 banks).

BASE and HEAD are git revisions of this repository or folders holding a
``finsim_mesa`` package (HEAD: the working tree). A config is a bank count,
with ``x`` for 2 exchanges + 1 CCP.
"""

from __future__ import annotations

import argparse
import gc
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tree(rev: str, scratch: Path) -> Path:
    """A folder with ``finsim_mesa`` of ``rev`` (a folder is used as it is)."""
    if Path(rev).is_dir():
        return Path(rev).resolve()  # (a relative "." would not match the module's path)
    dest = scratch / rev.replace("/", "_")
    if dest.is_dir():  # the same revision twice (e.g. --layer-ratio REV REV)
        return dest
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "finsim_mesa"],
                          capture_output=True, check=True).stdout
    dest.mkdir()
    tarfile.open(fileobj=io.BytesIO(data)).extractall(dest, filter="data")
    return dest


def load(folder: Path) -> tuple[type, dict]:
    """``FinancialModel`` of the package in ``folder`` and its modules."""
    for k in [k for k in sys.modules if k == "finsim_mesa" or k.startswith("finsim_mesa.")]:
        del sys.modules[k]
    sys.path.insert(0, str(folder))
    import finsim_mesa

    if not finsim_mesa.__file__.startswith(str(folder)):
        raise SystemExit(f"{folder}: its finsim_mesa was not the one imported")
    sys.path.remove(str(folder))
    mods = {k: v for k, v in sys.modules.items()
            if k == "finsim_mesa" or k.startswith("finsim_mesa.")}
    return finsim_mesa.FinancialModel, mods


def interleave(pairs: list[tuple[type, dict, dict]], n: int, steps: int, repeat: int = 1,
               warmup: int = 5) -> tuple[float, float]:
    """Median CPU seconds per step of two models (``FinancialModel`` class, its
    modules, extra keyword arguments), ``n`` banks each, stepped in turns A, B,
    B, A, ... after ``warmup`` steps; ``repeat`` times from fresh models (seeds
    1, 2, ...), all steps' times pooled."""
    times: list[list[float]] = [[], []]
    for r in range(repeat):
        models = []
        for cls, mods, kw in pairs:
            sys.modules.update(mods)
            m = cls(n_banks=n, brain="rule_based", agent_collect_every=0, steps=10**9,
                    rng=1 + r, **kw)
            m.run_for(warmup)
            models.append((m, mods))
        gc.disable()
        try:
            for i in range(steps):
                for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                    m, mods = models[j]
                    sys.modules.update(mods)
                    t0 = time.process_time()
                    m.step()
                    times[j].append(time.process_time() - t0)
                if i % 50 == 0:
                    gc.collect()
        finally:
            gc.enable()
    # the steps' own ratios and the means too: where steps fall into groups of different
    # cost (e.g. 100,000 banks with and without distress), the median may sit on their
    # boundary and say little
    a, b = times
    r = sorted(y / x for x, y in zip(a, b, strict=True))
    print(f"        paired per-step ratio median {statistics.median(r):.3f} "
          f"(q25 {r[len(r) // 4]:.3f}, q75 {r[3 * len(r) // 4]:.3f}); means "
          f"{statistics.mean(a) * 1e3:.3f} / {statistics.mean(b) * 1e3:.3f} ms = "
          f"{statistics.mean(b) / statistics.mean(a):.3f}", flush=True)
    return statistics.median(a), statistics.median(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base")
    ap.add_argument("head", nargs="?", default=str(ROOT))
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--configs", default="30,100,1000,1000x")
    ap.add_argument("--repeat", type=int, default=1,
                    help="fresh models (seeds 1..R) per config, times pooled; e.g. "
                         "--steps 100 --repeat 8 for the early steps that bench_issue15.py's "
                         "fresh-process rows time (steps 4-103)")
    ap.add_argument("--warmup", type=int, default=5, help="steps run before timing")
    ap.add_argument("--layer-ratio", action="store_true",
                    help="time HEAD only: each bank count with the layer off against "
                         "the same with 2 exchanges + 1 CCP (an x on a config is ignored)")
    args = ap.parse_args()
    if args.steps < 10:
        ap.error("--steps: give at least 10")
    if args.repeat < 1 or args.warmup < 0:
        ap.error("--repeat: give at least 1; --warmup: give 0 or more steps")
    with tempfile.TemporaryDirectory() as scratch:
        trees = [load(tree(r, Path(scratch))) for r in (args.base, args.head)]
        print("load average", open("/proc/loadavg").read().split()[:3],
              f"base {args.base} head {args.head}", flush=True)
        for c in args.configs.split(","):
            n = int(c.rstrip("x"))
            kw = {"n_exchanges": 2, "n_ccps": 1} if c.endswith("x") else {}
            if args.layer_ratio:  # one tree (HEAD), the layer off against on
                cls, mods = trees[1]
                pairs = [(cls, mods, {}), (cls, mods, {"n_exchanges": 2, "n_ccps": 1})]
                labels = (f"{n} off", f"{n}x on", "on / off")
            else:
                pairs = [(cls, mods, kw) for cls, mods in trees]
                labels = ("base", "head", "head / base")
            ma, mb = interleave(pairs, n, args.steps, args.repeat, args.warmup)
            print(f"{c:>6s} banks: {labels[0]} {ma * 1e3:7.3f} ms, {labels[1]} {mb * 1e3:7.3f} ms, "
                  f"{labels[2]} {mb / ma:.3f}", flush=True)
        print("load average", open("/proc/loadavg").read().split()[:3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
