"""Helper for ``tests/test_sampling.py``: a small hierarchical regression sampled by
:func:`bayesfn.sampling.sample`, run under ``torchrun`` or killed mid-run.

``--mode ddp --out DIR``: launched as ``python -m torch.distributed.run --standalone
--nproc_per_node=2 tests/_sampling_worker.py --mode ddp --out DIR``; every rank runs its
share of the chains, checks that it received all chains' draws, and rank 0 writes
``DIR/draws.safetensors``.

``--mode kill --ckpt DIR --kill-at K``: samples with checkpoints and sends itself SIGKILL
after step ``K``; every step's chain-mean potential is printed (``repr``).

The test imports :func:`run` to make the same run in one process.
"""

from __future__ import annotations

import argparse
import os
import signal

import torch

from bayesfn._random import standard_gamma
from bayesfn.sampling import AdaptiveSGHMCKernel, SampleResult, SampleStepInfo, sample

N, D, BATCH, CHAINS, SEED = 30, 3, 8, 3, 11  # 3 batches an epoch, a ragged tail of 6
BURN_IN, DRAWS, THIN, HOOK_EVERY = 12, 9, 2, 5  # 30 steps


def make_problem():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) + 0.3
    y = y + 0.5 * torch.randn(N, generator=g, dtype=torch.float64)
    init = {
        "w": torch.randn(CHAINS, D, generator=g, dtype=torch.float64),
        "b": torch.zeros(CHAINS, dtype=torch.float64),
    }
    hook_init = {"prec": torch.ones(CHAINS, dtype=torch.float64)}

    def log_prob(params, batch, extra):
        xb, yb = batch  # (C, B, D), (C, B)
        w, b = params["w"], params["b"]
        resid = yb - torch.einsum("cbd,cd->cb", xb, w) - b[:, None]
        lik = -0.5 * (resid**2).sum(-1) / 0.25 * (N / xb.shape[1])
        prec = extra["prec"]
        prior_w = 0.5 * D * prec.log() - 0.5 * prec * (w**2).sum(-1)
        return lik + prior_w - 0.5 * b**2

    def gibbs(params, extra, generators):
        """1/σ² | w ~ Gamma(1 + D/2, 1 + Σw²/2), each chain from its own generator."""
        shape = torch.tensor(1.0 + D / 2, dtype=torch.float64)
        rate = 1.0 + 0.5 * (params["w"] ** 2).sum(-1)
        draws = [standard_gamma(shape, generator=gen) for gen in generators]
        return {"prec": torch.stack(draws) / rate}

    return log_prob, init, (x, y), gibbs, hook_init


def run(
    checkpoint_dir: str | None = None,
    callbacks=(),
    first_chain: int = 0,
    chains: slice = slice(None),
) -> SampleResult:
    log_prob, init, data, gibbs, hook_init = make_problem()
    return sample(
        log_prob,
        {k: v[chains] for k, v in init.items()},
        AdaptiveSGHMCKernel(lr=0.05, mdecay=0.1, grad_clip=30.0),
        data=data,
        batch_size=BATCH,
        num_burn_in=BURN_IN,
        num_draws=DRAWS,
        thin=THIN,
        seed=SEED,
        first_chain=first_chain,
        hook=gibbs,
        hook_init={k: v[chains] for k, v in hook_init.items()},
        hook_every=HOOK_EVERY,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=4,
        check_every=3,
        progress_bar=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["ddp", "kill"], required=True)
    parser.add_argument("--out")
    parser.add_argument("--ckpt")
    parser.add_argument("--kill-at", type=int, default=13)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.mode == "kill":

        def echo_and_kill(info: SampleStepInfo) -> None:
            print(info.step, repr(float(info.potential.mean())), flush=True)
            if info.step == args.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        run(args.ckpt, callbacks=[echo_and_kill])
        return

    import torch.distributed as dist
    from safetensors.torch import save_file

    result = run()
    assert dist.is_initialized(), "sample() did not start torch.distributed"
    assert result.num_chains == CHAINS and result.num_draws == DRAWS
    if dist.get_rank() == 0:
        os.makedirs(args.out, exist_ok=True)
        tensors = {f"draws.{k}": v.contiguous() for k, v in result.draws.items()}
        tensors.update({f"extra.{k}": v.contiguous() for k, v in result.extra_draws.items()})
        tensors["potentials"] = result.potentials.contiguous()
        tensors["world_size"] = torch.tensor(dist.get_world_size())
        save_file(tensors, os.path.join(args.out, "draws.safetensors"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
