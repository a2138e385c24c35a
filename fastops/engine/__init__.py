"""Training and evaluation loops, checkpoints and the glue between models, data and metrics
(layout in docs/ARCHITECTURE.md, "Data, engine, CLI"); the only layer that joins the three."""

from .bench import bench_model
from .checkpoint import load_checkpoint, save_checkpoint
from .demo import run_demo
from .errors import EngineError
from .evaluate import evaluate
from .inference import InferenceConfig, load_trained, run_eval, run_predict
from .models import MODELS, ModelSpec, build_model, model_spec
from .tasks import make_task
from .train import TrainConfig, TrainResult, read_jsonl, train

__all__ = [
    "MODELS",
    "EngineError",
    "InferenceConfig",
    "ModelSpec",
    "TrainConfig",
    "TrainResult",
    "bench_model",
    "build_model",
    "evaluate",
    "load_checkpoint",
    "load_trained",
    "make_task",
    "model_spec",
    "read_jsonl",
    "run_demo",
    "run_eval",
    "run_predict",
    "save_checkpoint",
    "train",
]
