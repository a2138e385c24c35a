"""Shared benchmark machinery: timing, the machine's description, measured bandwidth and peak,
results.

Every benchmark runs fastops and its reference on the same inputs in the same process, reports
medians and their ratio, and a floor: the least time the work can take on this machine. Memory
floors are bytes over the bandwidth measured here (``bandwidth_gbs``); compute floors are useful
FLOPs over the arithmetic peak measured here by fastops' own FMA micro-kernel (``peak_gflops``),
never over another library's achieved rate. A floor is a floor: a time below it means the floor
is wrong, and the table says so instead of printing an x-floor below 1. Results are written to
benchmarks/results/<machine>/<benchmark>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import fastops

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def run_python(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``python <args>`` in a fresh process with this interpreter, from the benchmarks folder:
    the child imports the installed fastops whatever the caller's working directory (from the
    repository root, ``import fastops`` would find the unbuilt source folder), and ``common``."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=check, cwd=BENCH_DIR)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ms(
    fn: Callable[[], object], device: str = "cpu", *, warmup: int = 2, repeat: int = 15, budget_s: float = 20.0
) -> float:
    """Median wall time of fn() in milliseconds (CUDA: device events around each call)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    start_all = time.perf_counter()
    for _ in range(repeat):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - start_all > budget_s and len(times) >= 3:
            break
    return statistics.median(times)


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.*)", text)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: str) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "fastops_build": fastops.build_info(),
        "python": platform.python_version(),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        info["gpu_sms"] = props.multi_processor_count
    return info


def machine_slug(info: dict) -> str:
    if "gpu" in info:
        name = info["gpu"]
    else:
        name = f"{info['cpu']}-{info['torch_threads']}threads"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


_bandwidth_cache: dict = {}


def bandwidth_gbs(device: str, nbytes: int, kind: str) -> float:
    """Bandwidth measured here, in GB/s, on buffers of nbytes: kind "write" fills a buffer (bytes
    written), "alloc_write" allocates a new one and fills it (what an op returning a fresh output
    pays, page faults included), "copy" copies one (bytes read plus written). The floor of a
    memory-bound op is its bytes over the matching figure, measured on the same sizes so caches
    and the allocator play the same part."""
    key = (device, nbytes, kind)
    if key not in _bandwidth_cache:
        n = max(nbytes // 4, 1)
        dst = torch.empty(n, dtype=torch.float32, device=device)
        if kind == "write":
            ms = time_ms(lambda: dst.fill_(1.0), device, repeat=20)
            moved = n * 4
        elif kind == "alloc_write":
            ms = time_ms(lambda: torch.empty(n, dtype=torch.float32, device=device).fill_(1.0), device, repeat=20)
            moved = n * 4
        else:
            src = torch.rand(n, dtype=torch.float32, device=device)
            ms = time_ms(lambda: dst.copy_(src), device, repeat=20)
            moved = 2 * n * 4
        _bandwidth_cache[key] = moved / (ms * 1e-3) / 1e9
    return _bandwidth_cache[key]


_peak_cache: dict = {}


def peak_gflops(device: str) -> tuple[float, str]:
    """The float32 arithmetic peak in GFLOP/s and how it was found. CPU: fastops' FMA micro-kernel
    (register-only FMA chains, the active instruction set, every kernel thread at once;
    ``torch.ops.fastops.cpu_peak_gflops``). CUDA: no micro-kernel of ours yet, so the rate of a
    large float32 GEMM (TF32 off), an achieved rate rather than a peak."""
    if device not in _peak_cache:
        if device.startswith("cuda"):
            a = torch.randn(4096, 4096, device=device)
            allow = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
            try:
                ms = time_ms(lambda: a @ a, device, repeat=10)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = allow
            _peak_cache[device] = (2 * 4096**3 / (ms * 1e-3) / 1e9, "float32 GEMM rate (cuBLAS)")
        else:
            gflops = torch.ops.fastops.cpu_peak_gflops(1.0)
            _peak_cache[device] = (gflops, f"FMA peak ({fastops.build_info()['cpu_isa']}, all threads)")
    return _peak_cache[device]


@dataclass
class Row:
    case: str
    fastops_ms: float
    reference: str
    reference_ms: float | None
    floor_ms: float | None = None
    floor_basis: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        return None if self.reference_ms is None else self.reference_ms / self.fastops_ms

    @property
    def of_floor(self) -> float | None:
        """fastops' time over the floor (>= 1), or None without a floor or when the time is below it
        (then the floor is not one: ``below_floor``)."""
        if self.floor_ms is None or self.below_floor:
            return None
        return self.fastops_ms / self.floor_ms

    @property
    def below_floor(self) -> bool:
        return self.floor_ms is not None and self.fastops_ms < self.floor_ms


def format_table(rows: list[Row]) -> str:
    head = "| case | fastops ms | reference | reference ms | speedup | floor ms | x floor | floor basis | also |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        ref = "-" if r.reference_ms is None else f"{r.reference_ms:.3f}"
        sp = "-" if r.speedup is None else f"{r.speedup:.1f}x"
        fl = "-" if r.floor_ms is None else f"{r.floor_ms:.3f}"
        of = "below: not a floor" if r.below_floor else "-" if r.of_floor is None else f"{r.of_floor:.1f}"
        also = ", ".join(f"{k}={v}" for k, v in r.extra.items())
        lines.append(
            f"| {r.case} | {r.fastops_ms:.3f} | {r.reference} | {ref} | {sp} | {fl} | {of} | {r.floor_basis} | {also} |"
        )
    return "\n".join(lines)


def save(bench: str, machine: dict, rows: list[Row], notes: str = "") -> Path:
    folder = RESULTS_DIR / machine_slug(machine)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": bench,
        "machine": machine,
        "rows": [asdict(r) | {"speedup": r.speedup, "x_floor": r.of_floor} for r in rows],
        "notes": notes,
    }
    (folder / f"{bench}.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = [f"# {bench} on {machine.get('gpu', machine['cpu'])}", ""]
    md.append(
        f"{machine['date']}; torch {machine['torch']}, torchvision {machine.get('torchvision', '-')}, "
        f"{machine['torch_threads']} CPU threads, fastops CPU ISA {machine['fastops_build']['cpu_isa']}."
    )
    md += ["", format_table(rows), ""]
    if notes:
        md += [notes, ""]
    (folder / f"{bench}.md").write_text("\n".join(md))
    return folder


def bench_main(name: str, doc: str, run: Callable[[str, bool], list[Row]], notes: str = "") -> list[Row]:
    """The command line of a benchmarks/bench_<name>.py file: run, print, save."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats; nothing saved")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    machine = describe_machine(args.device)
    rows = run(args.device, args.quick)
    print(format_table(rows))
    if not args.no_save and not args.quick:
        print("saved to", save(name, machine, rows, notes))
    return rows
