"""The command line: ``python -m fastops`` / ``fastops`` with ``train``, ``eval``, ``predict``,
``bench`` and ``demo``. Parses arguments and calls ``fastops.engine``; a mistake in the input (an
unknown model or dataset, a missing path, a checkpoint from another model, a bad dataset file) is
one line on stderr and exit status 2 (``--debug`` shows the traceback)."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from . import data, engine
from .engine.datasets import AUGMENTATIONS, DATA_HELP, SAMPLERS
from .engine.models import MODELS
from .engine.optim import OPTIMIZERS

__all__ = ["main"]

EXIT_USAGE = 2

USER_ERRORS = (engine.EngineError, getattr(data, "DatasetError", engine.EngineError))


def _names(choices: tuple[str, ...]):
    """An argparse type: a comma-separated list of names from ``choices``, as a tuple."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
        return names

    return parse


def _models_help() -> str:
    by_task: dict[str, list[str]] = {}
    for name, spec in MODELS.items():
        by_task.setdefault(spec.task, []).append(name)
    return "models (--model):\n" + "\n".join(f"  {task:13} {', '.join(names)}" for task, names in by_task.items())


EPILOG = _models_help() + "\n\n" + DATA_HELP


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per process (default: torch's, the demo 1; 1 is faster on a machine busy with other work)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def _synthetic(p: argparse.ArgumentParser, defaults: bool) -> None:
    g = p.add_argument_group("synthetic data")
    g.add_argument("--image-size", type=int, default=None, help="image side (default: the model's)")
    g.add_argument("--num-images", type=int, default=512 if defaults else None, help="training images")
    g.add_argument(
        "--val-images",
        type=int,
        default=64 if defaults else None,
        help="validation images (synthetic), evaluated after each epoch (any data; 0: none)",
    )
    g.add_argument("--num-classes", type=int, default=5 if defaults else None, help="classes (background excluded)")
    g.add_argument(
        "--imbalance",
        type=float,
        default=1.0 if defaults else None,
        help="ratio of the most to the least frequent class (1: balanced)",
    )
    g.add_argument("--seed", type=int, default=0 if defaults else None)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="fastops",
        description="Train, evaluate and benchmark fastops' models.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model", epilog=EPILOG, formatter_class=fmt)
    p.add_argument("--model", required=True, help="a model name (below)")
    p.add_argument("--data", default="synthetic", help="synthetic | coco:PATH | voc:PATH (below)")
    p.add_argument("--out", default="runs/train", help="folder for the checkpoint, logs and pictures")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="total optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=4, help="images per step and process")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: sgd 0.02, adamw 1e-3)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--clip-grad", type=float, default=None, metavar="NORM", help="clip the gradient norm")
    p.add_argument("--amp", action="store_true", help="float16 mixed precision (CUDA only; ignored on the CPU)")
    p.add_argument("--sampler", choices=SAMPLERS, default="none", help="training image sampling")
    p.add_argument(
        "--augment",
        type=_names(AUGMENTATIONS),
        default=(),
        metavar="A,B",
        help=f"training augmentations, applied in order: {', '.join(AUGMENTATIONS)}",
    )
    p.add_argument(
        "--repeat-thresh",
        type=float,
        default=0.001,
        metavar="T",
        help="repeat_factor sampler: images whose rarest class is in fewer than a fraction T of the images "
        "repeat (LVIS's 0.001; the synthetic shapes' few classes need about 0.3 to see an effect)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="STEPS",
        help="also checkpoint every STEPS steps (always at each epoch's end)",
    )
    p.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        metavar="STEP",
        help="stop at STEP as an interruption would (checkpoint, then exit); --resume continues",
    )
    p.add_argument("--train-split", default=None, help="COCO / VOC training split")
    p.add_argument("--val-split", default=None, help="COCO / VOC validation split")
    p.add_argument("--workers", type=int, default=0, help="data loading processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    _synthetic(p, True)
    _common(p)

    for name, text in (("eval", "evaluate a checkpoint"), ("predict", "draw a checkpoint's predictions")):
        p = sub.add_parser(name, help=text, epilog=EPILOG, formatter_class=fmt)
        p.add_argument("--checkpoint", required=True, help="a checkpoint written by `fastops train` (OUT/last.pt)")
        p.add_argument("--model", default=None, help="the model the checkpoint must hold (default: whatever it holds)")
        p.add_argument("--data", default=None, help="synthetic | coco:PATH | voc:PATH (default: as trained)")
        p.add_argument("--out", default=f"runs/{name}")
        p.add_argument("--batch-size", type=int, default=8)
        p.add_argument(
            "--images", type=int, default=None, help="images to evaluate (default all) / to draw (default 8)"
        )
        p.add_argument("--val-split", default=None, help="COCO / VOC split")
        if name == "predict":
            p.add_argument("--score-thresh", type=float, default=0.5, help="draw detections scored at least this")
        _synthetic(p, False)
        _common(p)

    p = sub.add_parser("bench", help="time a model's training step and inference", epilog=EPILOG, formatter_class=fmt)
    p.add_argument("--model", nargs="+", required=True, help="one or more model names")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=None, help="image side (default: the model's)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (the median is reported)")
    _common(p)

    p = sub.add_parser("demo", help="train, evaluate and draw a small detector on synthetic shapes")
    p.add_argument("--out", default="runs/demo", help="folder for the checkpoint, logs and pictures")
    p.add_argument("--quick", action="store_true", help="a tiny version (well under a minute)")
    p.add_argument("--no-progress", action="store_true")
    _common(p)
    return parser


def _check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise engine.EngineError("--device cuda: no CUDA device is available (use --device cpu)")


def _train(a) -> None:
    cfg = engine.TrainConfig(
        model=a.model,
        data=a.data,
        out=a.out,
        epochs=a.epochs,
        steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        optimizer=a.optimizer,
        weight_decay=a.weight_decay,
        warmup_steps=a.warmup_steps,
        clip_grad=a.clip_grad,
        amp=a.amp,
        device=a.device,
        sampler=a.sampler,
        repeat_thresh=a.repeat_thresh,
        augment=a.augment,
        resume=a.resume,
        seed=a.seed,
        image_size=a.image_size,
        num_images=a.num_images,
        val_images=a.val_images,
        num_classes=a.num_classes,
        imbalance=a.imbalance,
        train_split=a.train_split,
        val_split=a.val_split,
        checkpoint_every=a.checkpoint_every,
        stop_at_step=a.stop_at_step,
        num_workers=a.workers,
        progress=not a.no_progress,
    )
    engine.train(cfg)


def _inference_config(a) -> engine.InferenceConfig:
    return engine.InferenceConfig(
        checkpoint=a.checkpoint,
        model=a.model,
        data=a.data,
        out=a.out,
        batch_size=a.batch_size,
        device=a.device,
        images=a.images,
        image_size=a.image_size,
        val_images=a.val_images,
        num_classes=a.num_classes,
        imbalance=a.imbalance,
        seed=a.seed,
        val_split=a.val_split,
        score_thresh=getattr(a, "score_thresh", 0.5),
    )


def _eval(a) -> None:
    metrics = engine.run_eval(_inference_config(a))
    print(json.dumps(metrics))


def _predict(a) -> None:
    print(engine.run_predict(_inference_config(a)))


def _bench(a) -> None:
    for name in a.model:
        engine.model_spec(name)
    print(f"{'model':28} {'device':6} {'batch':>5} {'size':>5} {'train img/s':>12} {'infer img/s':>12}")
    for name in a.model:
        r = engine.bench_model(
            name, device=a.device, batch_size=a.batch_size, image_size=a.image_size, repeats=a.repeats
        )
        print(
            f"{name:28} {r['device']:6} {r['batch_size']:5d} {r['image_size']:5d} "
            f"{r['train_images_per_s']:12.2f} {r['infer_images_per_s']:12.2f}",
            flush=True,
        )


def _demo(a) -> None:
    threads = 1 if a.threads is None else a.threads  # the demo's default (engine.run_demo)
    engine.run_demo(a.out, quick=a.quick, device=a.device, progress=not a.no_progress, threads=threads)


COMMANDS = {"train": _train, "eval": _eval, "predict": _predict, "bench": _bench, "demo": _demo}


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit status (0, or 2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        _check_device(args.device)
        if args.threads is not None:
            if args.threads < 1:
                raise engine.EngineError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        COMMANDS[args.command](args)
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"fastops {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"fastops {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
