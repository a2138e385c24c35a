"""Training under torchrun: two gloo processes on the CPU train a few steps with
DistributedDataParallel and end with the same weights and the same (synchronized) metrics."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import fastops

# the folder holding the fastops under test (the source tree in a dev build, site-packages when installed)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(fastops.__file__)))

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from fastops import engine

    out, model = sys.argv[1], sys.argv[2]
    cfg = engine.TrainConfig(model=model, out=out, steps=3, batch_size=2, num_images=6, val_images=5,
                             num_classes=3, image_size=int(sys.argv[3]), warmup_steps=1, progress=False)
    result = engine.train(cfg)
    weights = torch.cat([p.detach().flatten() for p in result.model.parameters()]).double()
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump({"metrics": result.metrics, "sum": float(weights.sum()), "norm": float(weights.norm()),
                   "world": int(os.environ["WORLD_SIZE"])}, f)
    """
)


@pytest.mark.parametrize(("model", "size"), [("fasterrcnn_small", 64), ("unet_small", 32)])
def test_two_gloo_processes_agree(tmp_path, model, size):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path), model, str(size)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["sum"] == ranks[1]["sum"] and ranks[0]["norm"] == ranks[1]["norm"]
    assert ranks[0]["metrics"] == ranks[1]["metrics"] and ranks[0]["metrics"]
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3]  # rank 0 alone writes the logs
    # the 6 images are split between the processes: 3 each, 2 steps per epoch
    assert [s["epoch"] for s in steps] == [0, 0, 1]
