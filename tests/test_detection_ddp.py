"""Training under DistributedDataParallel: two gloo processes on the CPU give the gradients of a
single-process run on the same batch.

RetinaNet's and YOLO v1's losses are means over images, so each process takes one image of the
batch and DDP's average of the two gradients is the batch's gradient. The R-CNNs' losses are means
over the anchors and proposals sampled from the whole batch (and sampling draws from the random
generator image by image), so each process takes the whole batch: DDP's average of two equal
gradients must equal the single-process gradient.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detection_common import synthetic_batch

from fastops.models.detection.small import fasterrcnn_small, maskrcnn_small, retinanet_small
from fastops.models.detection.yolo_v1 import yolo_v1_small

BUILDERS = {
    "retinanet": retinanet_small,
    "yolo_v1": yolo_v1_small,
    "fasterrcnn": fasterrcnn_small,
    "maskrcnn": maskrcnn_small,
}
SPLIT = {"retinanet", "yolo_v1"}  # losses that are means over images


def _batch(kind):
    min_label = 0 if kind in SPLIT else 1
    # one image size: a batch pads its images to a common size, so an image alone (one process) and the
    # same image in the batch see the same padded tensor only when the sizes agree
    return synthetic_batch([(128, 128), (128, 128)], 4, seed=4, masks=kind == "maskrcnn", min_label=min_label)


def _gradients(model, images, targets):
    torch.manual_seed(1)
    sum(model(images, targets).values()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for kind, builder in BUILDERS.items():
            torch.manual_seed(0)
            model = torch.nn.parallel.DistributedDataParallel(builder(4).train())
            images, targets = _batch(kind)
            if kind in SPLIT:
                images, targets = images[rank : rank + 1], targets[rank : rank + 1]
            grads = _gradients(model, images, targets)
            if rank == 0:
                torch.save({n.removeprefix("module."): g for n, g in grads.items()}, os.path.join(out_dir, kind))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_gradients_equal_a_single_process_run(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for kind, builder in BUILDERS.items():
        torch.manual_seed(0)
        expected = _gradients(builder(4).train(), *_batch(kind))
        got = torch.load(tmp_path / kind)
        assert set(got) == set(expected), kind
        for name, grad in expected.items():
            torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-6, msg=f"{kind}: {name}")
