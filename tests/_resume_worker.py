"""Helper for ``tests/test_training.py``: a small stochastic minibatch fit that can kill itself.

Run as a script it fits with checkpoints and sends itself SIGKILL at ``--kill-at``; the
test then resumes the same fit in its own process and compares with an uninterrupted one.
Every step's loss is printed (``repr``) so the test can check the killed run's trajectory.
"""

from __future__ import annotations

import argparse
import os
import signal

import torch

from bayesfn.training import FitResult, StepInfo, optimize

N, D, BATCH, SEED = 36, 3, 8, 3  # 4 batches an epoch, a ragged tail of 4 dropped


def make_problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    noise = torch.randn(N, 1, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(-1, keepdim=True)) + 0.1 * noise
    with torch.random.fork_rng():
        torch.manual_seed(7)
        net = torch.nn.Sequential(
            torch.nn.Linear(D, 16),
            torch.nn.Tanh(),
            torch.nn.Dropout(0.2),  # draws from torch's global RNG
            torch.nn.Linear(16, 1),
        ).double()
    return net, x, y


def fit(
    checkpoint_dir: str | None,
    max_steps: int,
    kill_at: int | None = None,
    echo: bool = False,
) -> tuple[torch.nn.Module, FitResult]:
    net, x, y = make_problem()

    def loss_fn(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        xb, yb = batch
        xb = xb + 0.05 * torch.randn_like(xb)  # input noise, also from the global RNG
        return ((net(xb) - yb) ** 2).mean()

    def callback(info: StepInfo) -> None:
        if echo:
            print(info.step, repr(info.loss), flush=True)
        if kill_at is not None and info.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    result = optimize(
        net,
        loss_fn,
        data=(x, y),
        batch_size=BATCH,
        max_steps=max_steps,
        optimizer="adam",
        lr=0.02,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.7),
        seed=SEED,
        callbacks=[callback],
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=5,
        progress_bar=False,
    )
    return net, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--kill-at", type=int, default=13)
    parser.add_argument("--threads", type=int, default=None)  # match the test's process
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    fit(args.ckpt, args.max_steps, kill_at=args.kill_at, echo=True)


if __name__ == "__main__":
    main()
