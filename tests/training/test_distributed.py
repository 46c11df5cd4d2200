"""Data-parallel training: two gloo processes stay in lock-step (identical weights after every
epoch means the gradients really were averaged), and torchrun drives the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

from ldensf.ports import free_port
from training.trainer import read_metrics


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
        }
    )
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    from test_training import tiny_config, travelling_bumps, unit_norm

    from training import distributed
    from training.ldnet_training import train_ldnet

    assert distributed.init_from_environment("cpu") == "cpu"
    train, val = travelling_bumps(16, 6, seed=0), travelling_bumps(4, 6, seed=1)
    model = train_ldnet(train, val, unit_norm(), tiny_config(joint_epochs=30), Path(out), {}, progress=False)
    torch.save(model.state_dict(), Path(out) / f"weights_rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_processes_average_gradients_and_only_rank_zero_writes(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    w0 = torch.load(tmp_path / "weights_rank0.pt")
    w1 = torch.load(tmp_path / "weights_rank1.pt")
    for key, value in w0.items():
        torch.testing.assert_close(value, w1[key], rtol=0, atol=0)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(1, 31))  # one writer, one line per epoch
    assert records[-1]["train_loss"] < records[0]["train_loss"] / 3


def test_torchrun_runs_the_training_command(tmp_path: Path, tiny_run: dict[str, Path]) -> None:
    data, config = tiny_run["data"], tiny_run["config"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "ldensf.cli",
            "train",
            "ldnet",
            "--config",
            str(config),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "run" / "ldnet" / "test_metrics.json").is_file()
    assert len(read_metrics(tmp_path / "run" / "ldnet" / "metrics.jsonl")) == 3  # 2 joint + 1 reconstruction
