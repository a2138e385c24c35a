"""Runs every benchmark, prints its table and saves it under benchmarks/results/<machine>/.

python benchmarks/run.py [--device cpu|cuda] [--quick] [--only box_iou]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import describe_machine, format_table, save

BENCHMARKS = [
    "box_iou",
    "nms",
    "focal_loss",
    "roi_align",
    "conv",
    "coco_eval",
    "segmentation",
    "paste_masks",
    "hungarian",
    "selective_search",
    "panoptic",
    "models",
    "ssd",
    "patched_torchvision",
    "python_layer",
]  # benchmarks/bench_<name>.py, each with run(device, quick) and NOTES


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="fastops benchmarks")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats; nothing saved")
    parser.add_argument("--only", action="append", choices=BENCHMARKS)
    args = parser.parse_args(argv)
    machine = describe_machine(args.device)
    print(
        f"# machine: {machine.get('gpu', machine['cpu'])}, torch {machine['torch']}, "
        f"{machine['torch_threads']} threads, fastops {machine['fastops_build']}"
    )
    for name in args.only or BENCHMARKS:
        module = importlib.import_module(f"bench_{name}")
        rows = module.run(args.device, args.quick)
        print(f"\n## {name}\n")
        print(format_table(rows))
        if not args.quick:
            print("saved to", save(name, machine, rows, getattr(module, "NOTES", "")))


if __name__ == "__main__":
    main()
