"""Shared helpers for the benchmark scripts: timing, peak memory, process isolation, the table.

Nothing here is part of ``chestlab``; the scripts import it as ``_common`` (``benchmarks/`` is
``sys.path[0]`` when a script is run as ``python benchmarks/bench_*.py``).

Timing
    ``time_ms``: the call that measured memory counts as the first warm-up, then ``warmup - 1`` more
    calls (none when one call already takes longer than the per-case budget), then the median of
    ``n`` timed calls, ``n`` = ``repeats`` or fewer when the budget runs out (at least
    ``min_repeats``). Wall clock (``time.perf_counter``) around each call, with
    ``torch.cuda.synchronize`` before and after on CUDA. ``torch.set_num_threads`` is left at
    torch's default unless ``--threads`` is given.

Peak memory
    CPU: torch keeps no allocator statistics on the CPU, so every case runs in a *fresh* process
    (``multiprocessing`` spawn) and we report the growth of the process's peak resident set size
    during one call: the peak is reset just before the call (``/proc/self/clear_refs`` ← ``5``
    resets ``VmHWM``, Linux >= 4.0) and the growth is ``VmHWM`` after the call minus ``VmRSS``
    before it, i.e. after imports, after allocating the inputs and after a warm-up on tiny inputs
    (which starts the thread pools and any lazy state). Where ``clear_refs`` cannot be written the
    fallback is ``ru_maxrss`` after minus ``ru_maxrss`` before (an underestimate if the process had
    peaked higher before the call); the table header says which was used.
    CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
    ``memory_allocated()`` before the call (the caching allocator's reserved pool is not counted).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from typing import Any, Callable, Optional, Sequence

MIB = 1024.0 * 1024.0

# geoopt 0.5 uses torch.jit.script, which torch >= 2.10 flags with a FutureWarning at import
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def add_common_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("measurement (shared by the benchmark scripts)")
    g.add_argument("--device", default="cpu", help="torch device: cpu or cuda / cuda:N")
    g.add_argument("--quick", action="store_true",
                   help="fast smoke run: CUB scale only, 1 warm-up and 3 timed calls per case")
    g.add_argument("--warmup", type=int, default=3, help="warm-up calls per case; the call that measures memory is the first")
    g.add_argument("--repeats", type=int, default=20, help="timed calls per case at most; the median is reported")
    g.add_argument("--min-repeats", type=int, default=3, help="timed calls per case even past --budget")
    g.add_argument("--budget", type=float, default=20.0,
                   help="seconds of timed calls per case after which the repeats are cut")
    g.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads in each case (None: leave torch's default)")
    g.add_argument("--max-gib", type=float, default=None,
                   help="skip a reference case whose estimated peak memory exceeds this many GiB "
                        "(None: 60%% of MemAvailable on CPU, 90%% of free GPU memory on CUDA)")
    g.add_argument("--strict", action="store_true", help="exit with status 1 when a target FAILs")


def resolve_quick(args: argparse.Namespace) -> None:
    if args.quick:
        args.warmup, args.repeats, args.min_repeats = 1, 3, 1
        args.budget = min(args.budget, 5.0)


# --------------------------------------------------------------------------------------------
# device helpers
# --------------------------------------------------------------------------------------------
def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def check_device(device: str) -> None:
    import torch

    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {device}: CUDA is not available in this torch build / on this machine")


def default_max_gib(device: str) -> float:
    import torch

    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return 0.9 * free / 2**30
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return 0.6 * int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 8.0


# --------------------------------------------------------------------------------------------
# peak memory
# --------------------------------------------------------------------------------------------
def _proc_status_kib(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_mem_method() -> str:
    """What ``peak_mib`` measures on the CPU in this environment (for the table header)."""
    ok = os.path.exists("/proc/self/clear_refs") and os.access("/proc/self/clear_refs", os.W_OK)
    if ok:
        return "peak RSS growth during one call (VmHWM reset via /proc/self/clear_refs), fresh spawned process per case"
    return "peak RSS growth during one call (ru_maxrss after - before), fresh spawned process per case"


def peak_mib(fn: Callable[[], Any], device) -> tuple[float, Any]:
    """Run ``fn`` once and return (peak memory growth in MiB during the call, its result)."""
    import torch

    dev = torch.device(device)
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        out = fn()
        torch.cuda.synchronize(dev)
        return (torch.cuda.max_memory_allocated(dev) - base) / MIB, out
    if _reset_hwm():
        base = _proc_status_kib("VmRSS")
        out = fn()
        peak = _proc_status_kib("VmHWM")
        return max(0, peak - base) / 1024.0, out
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = fn()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(0, peak - base) / 1024.0, out


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
def time_ms(fn: Callable[[], Any], device, *, warmup: int, repeats: int, min_repeats: int,
            budget_s: float, first_ms: Optional[float] = None) -> dict:
    """Median wall time of ``fn`` in ms (see the module docstring). ``first_ms``: the duration of a
    call already made (the memory call), counted as the first warm-up."""
    def once() -> float:
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        return (time.perf_counter() - t0) * 1e3

    done = 0
    last = first_ms
    if last is None:
        last = once()
    done = 1
    while done < warmup and last < budget_s * 1e3 / max(1, min_repeats):
        last = once()
        done += 1
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (len(times) < min_repeats or spent < budget_s * 1e3):
        t = once()
        times.append(t)
        spent += t
    return {"ms": statistics.median(times), "min_ms": min(times), "n": len(times)}


def measure(fn: Callable[[], Any], device, args) -> dict:
    """Peak memory of one call, then its median time. Returns {'mib', 'ms', 'min_ms', 'n', 'out'}."""
    sync(device)
    t0 = time.perf_counter()
    mib, out = peak_mib(fn, device)
    sync(device)
    first = (time.perf_counter() - t0) * 1e3
    del out
    t = time_ms(fn, device, warmup=args.warmup, repeats=args.repeats, min_repeats=args.min_repeats,
                budget_s=args.budget, first_ms=first)
    t["mib"] = mib
    return t


def setup_worker(threads: Optional[int]) -> None:
    """A case's process as a trainer sets it up: glibc keeps freed memory (chestlab.engine.device.
    keep_freed_memory, for every case, the floor included) and ``threads`` intra-op threads."""
    import torch

    from chestlab.engine.device import keep_freed_memory

    keep_freed_memory()
    if threads is not None:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# process isolation
# --------------------------------------------------------------------------------------------
class CaseFailed(Exception):
    pass


def run_isolated(target: Callable, *args) -> Any:
    """``target(*args)`` in a fresh spawned process (so its peak memory is its own); returns the
    result. A child killed by the OS (e.g. out of memory) raises ``CaseFailed``."""
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as ex:
        fut = ex.submit(target, *args)
        try:
            return fut.result()
        except cf.process.BrokenProcessPool as e:  # killed: OOM killer, segfault...
            raise CaseFailed(f"worker died ({e.__class__.__name__}; out of memory?)") from None


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------
def fmt_ms(v: Optional[float]) -> str:
    if v is None:
        return "—"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_mib(v: Optional[float]) -> str:
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def fmt_ratio(ref: Optional[float], ours: Optional[float]) -> str:
    """``ref / ours`` as 'N.N×' (how many times faster / smaller ours is)."""
    if ref is None or ours is None:
        return "—"
    if ours <= 0:
        return "∞" if ref > 0 else "—"
    r = ref / ours
    return f"{r:,.0f}×" if r >= 100 else f"{r:.1f}×"


def fmt_err(v: Optional[float]) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1e}"


def env_lines(device: str, threads: Optional[int]) -> list[str]:
    import torch

    try:
        import geoopt

        gv = geoopt.__version__
    except Exception:  # pragma: no cover
        gv = "?"
    nt = threads if threads is not None else torch.get_num_threads()
    if torch.device(device).type == "cuda":
        what = torch.cuda.get_device_name(torch.device(device))
    else:
        what = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load avg at start %.1f/%.1f/%.1f" % os.getloadavg()
    return [f"torch {torch.__version__}, geoopt {gv}, python {platform.python_version()}; "
            f"device {device} ({what}); torch threads {nt}{load}"]


def table(title: Sequence[str], headers: Sequence[str], rows: Sequence[Sequence[str]],
          notes: Sequence[str] = ()) -> str:
    """A Markdown table (pipes, aligned) with title lines above and notes below."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    right = [i > 0 for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if right[i] else cell.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if right[i] else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    parts = [*title, "", line(headers), sep, *(line(r) for r in rows)]
    if notes:
        parts += ["", *notes]
    return "\n".join(parts)


def verdict(ok: Optional[bool]) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")
