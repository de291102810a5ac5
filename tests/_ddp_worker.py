"""Helper for ``tests/test_training.py``: a data-parallel fit under ``torchrun``.

Launched as ``python -m torch.distributed.run --standalone --nproc_per_node=2
tests/_ddp_worker.py --out DIR``. Every rank fits the same float64 MLP with
:func:`bayesfn.training.optimize` (which starts gloo itself), the ranks check that they
ended with identical parameters and losses, and rank 0 writes ``DIR/params.safetensors``
and ``DIR/result.json`` (losses, world size and the rows each rank saw at each step).
The test imports :func:`make_problem` and :func:`fit` to run the same fit in one process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bayesfn.training import FitResult, optimize

N, D, BATCH, STEPS = 50, 3, 16, 20  # 3 global batches an epoch, a ragged tail of 2 dropped


def make_problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.cos(x @ torch.tensor([[1.0], [-0.5], [0.25]], dtype=torch.float64))
    y = y + 0.1 * torch.randn(N, 1, generator=g, dtype=torch.float64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Linear(D, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        ).double()
    return net, x, y


def fit(
    net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[FitResult, list[list[int]]]:
    """Fit and return the result and, per step, the indices of the rows this process saw."""
    seen: list[list[int]] = []

    def loss_fn(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        xb, yb = batch
        rows = (xb[:, None, :] == x[None, :, :]).all(-1).nonzero()[:, 1]
        seen.append(rows.tolist())
        return ((net(xb) - yb) ** 2).mean()

    result = optimize(
        net,
        loss_fn,
        data=(x, y),
        batch_size=BATCH,
        seed=0,
        max_steps=STEPS,
        optimizer="adam",
        lr=0.05,
        progress_bar=False,
    )
    return result, seen


def main() -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    net, x, y = make_problem()
    result, seen = fit(net, x, y)
    assert dist.is_initialized(), "optimize() did not start torch.distributed"
    world, rank = dist.get_world_size(), dist.get_rank()

    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    flats = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(flats, flat)
    losses = torch.tensor(result.losses, dtype=torch.float64)
    all_losses = [torch.empty_like(losses) for _ in range(world)]
    dist.all_gather(all_losses, losses)
    rows = torch.tensor(seen, dtype=torch.int64)
    all_rows = [torch.empty_like(rows) for _ in range(world)]
    dist.all_gather(all_rows, rows)
    for r in range(world):
        assert torch.equal(flats[r], flats[0]), f"rank {r} ended with other parameters"
        assert torch.equal(all_losses[r], all_losses[0]), f"rank {r} recorded other losses"

    if rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(out / "params.safetensors"))
        info = {
            "world_size": world,
            "losses": result.losses,
            "rows": [r.tolist() for r in all_rows],  # [rank][step][row]
        }
        (out / "result.json").write_text(json.dumps(info))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
