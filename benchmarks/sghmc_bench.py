"""SGHMC steps per second: bayesfn.sampling.sample against the `posteriors` package.

The network is a 13-100-1 tanh MLP (``sqrt(fan_in)``-scaled, as in Tran et al.) on a
Boston-sized regression set (455 x 13, synthetic), minibatches of 32, the log posterior
``(N/|B|) Σ_B log N(y | f(x), 0.1) + log N(w | 0, 1)``. Both sides evaluate exactly the
same one-chain log posterior (``torch.func.functional_call`` of the same module); ours
vectorises chains over it with ``torch.func.vmap``.

Comparisons (each a ratio of steps per second measured side by side, alternating which
side runs first, over ``--rounds`` rounds, at 1 thread and at 2 threads):

1. ``ours / posteriors``, one chain: plain SGHMC (Chen et al. 2014) on both sides, no
   gradient clipping (``posteriors`` has none), a thinned draw stored every 10 steps.
   ``posteriors.sgmcmc.sghmc`` is driven by the loop its documentation shows (``update``
   per minibatch), with the minibatches drawn from a random permutation as ours are.
2. ``vectorised / sequential``: ``C = 8`` chains in one vectorised run against the same
   8 chains run one at a time by our own loop (chain-steps per second); the goal is at
   least ``0.7 C``.
3. for information, ours with the package default (scale-adapted SGHMC, clipping at 100)
   through the BNN's own log joint (``SGHMC.log_density``).

Run:  ``PYTHONPATH=. python benchmarks/sghmc_bench.py --steps 2000 --rounds 4``
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import torch

from bayesfn.bayesnn import BNN, MLP, SGHMC, GaussianLikelihood
from bayesfn.sampling import SGHMCKernel, sample

N, D, HIDDEN, BATCH, NOISE = 455, 13, 100, 32, 0.1
LR, ALPHA, THIN = 1e-4, 0.05, 10


def make_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    y = torch.tanh(x @ torch.randn(D, 1, generator=g) / math.sqrt(D))
    y = y + math.sqrt(NOISE) * torch.randn(N, 1, generator=g)
    module = MLP(hidden=(HIDDEN,), activation="tanh").build(D, 1).requires_grad_(False)
    shapes = {k: v.shape for k, v in module.named_parameters()}

    def log_post(params, xb, yb):
        """One chain's minibatch estimate of the log posterior (a scalar)."""
        f = torch.func.functional_call(module, params, (xb,))
        lik = -0.5 * ((yb - f) ** 2).sum() / NOISE * (N / xb.shape[0])
        prior = -0.5 * sum((p**2).sum() for p in params.values())
        return lik + prior

    def init(chains: int, seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return {
            k: torch.zeros(chains, *s)
            if k.endswith("bias")
            else torch.randn(chains, *s, generator=g)
            for k, s in shapes.items()
        }

    return x, y, log_post, init


def run_ours(problem, chains: int, steps: int, first_chain: int = 0, seed: int = 0) -> float:
    """Seconds for ``steps`` steps of ``chains`` vectorised chains."""
    x, y, log_post, init = problem
    per_chain = torch.func.vmap(log_post)
    start = time.perf_counter()
    sample(
        lambda p, b, e: per_chain(p, b[0], b[1]),
        init(chains, seed),
        SGHMCKernel(lr=LR, mdecay=ALPHA),
        data=(x, y),
        batch_size=BATCH,
        num_draws=steps // THIN,
        thin=THIN,
        seed=seed,
        first_chain=first_chain,
        progress_bar=False,
    )
    return time.perf_counter() - start


def run_posteriors(problem, steps: int, seed: int = 0) -> float:
    """Seconds for ``steps`` steps of one chain of ``posteriors``' SGHMC."""
    import posteriors

    x, y, log_post, init = problem
    params = {k: v[0] for k, v in init(1, seed).items()}
    transform = posteriors.sgmcmc.sghmc.build(
        lambda p, batch: (log_post(p, *batch), torch.tensor([])), lr=LR, alpha=ALPHA
    )
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    state = transform.init(params)
    kept, perm, pos = [], torch.randperm(N, generator=g), 0
    for t in range(steps):
        if pos + BATCH > N:
            perm, pos = torch.randperm(N, generator=g), 0
        idx = perm[pos : pos + BATCH]
        pos += BATCH
        state, _ = transform.update(state, (x[idx], y[idx]))
        if (t + 1) % THIN == 0:
            kept.append({k: v.clone() for k, v in state.params.items()})
    return time.perf_counter() - start


def run_bnn_default(x, y, chains: int, steps: int) -> float:
    """Seconds for ``steps`` steps of the BNN's default (adaptive, clipped) SGHMC."""
    inference = SGHMC(
        num_burn_in=steps // 2,
        num_samples=steps // (2 * THIN),
        thin=THIN,
        num_discard=0,
        num_chains=chains,
    )
    model = BNN(MLP((HIDDEN,)), likelihood=GaussianLikelihood(NOISE), inference=inference)
    start = time.perf_counter()
    model.fit(x, y, seed=0, progress_bar=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    problem = make_problem()
    steps, c = args.steps, args.chains

    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}"
    )
    print(
        f"network {D}-{HIDDEN}-1 tanh, n={N}, batch {BATCH}, {steps} steps per run, "
        f"{args.rounds} rounds, order alternating"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        run_ours(problem, 1, 50), run_posteriors(problem, 50)  # warm-up
        vs_peer, vec = [], []
        for r in range(args.rounds):
            if r % 2 == 0:
                t_ours = run_ours(problem, 1, steps)
                t_peer = run_posteriors(problem, steps)
            else:
                t_peer = run_posteriors(problem, steps)
                t_ours = run_ours(problem, 1, steps)
            vs_peer.append(t_peer / t_ours)
            if r % 2 == 0:
                t_vec = run_ours(problem, c, steps)
                t_seq = sum(run_ours(problem, 1, steps, first_chain=i) for i in range(c))
            else:
                t_seq = sum(run_ours(problem, 1, steps, first_chain=i) for i in range(c))
                t_vec = run_ours(problem, c, steps)
            vec.append(t_seq / t_vec)
            print(
                f"  threads={threads} round {r}: ours {steps / t_ours:7.0f} steps/s, "
                f"posteriors {steps / t_peer:7.0f} steps/s, ratio {t_peer / t_ours:.2f}; "
                f"C={c} vectorised {c * steps / t_vec:7.0f} chain-steps/s, sequential "
                f"{c * steps / t_seq:7.0f}, speed-up {t_seq / t_vec:.2f}x"
            )
        t_bnn = run_bnn_default(problem[0], problem[1], 4, steps)
        print(
            f"threads={threads}: ours/posteriors median {statistics.median(vs_peer):.2f} "
            f"(min {min(vs_peer):.2f}, max {max(vs_peer):.2f}); vectorised/sequential at "
            f"C={c} median {statistics.median(vec):.2f}x (goal >= {0.7 * c:.1f}x; min "
            f"{min(vec):.2f}, max {max(vec):.2f}); BNN default SGHMC, 4 chains: "
            f"{steps / t_bnn:.0f} steps/s ({4 * steps / t_bnn:.0f} chain-steps/s); "
            f"load average now {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
