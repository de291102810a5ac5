"""Device check for bayesfn.circuits: the same model on CPU and CUDA.

Runs: normalisation by enumeration on CUDA, CPU-vs-CUDA agreement of log_prob for
identical parameters, exact sampling on CUDA, and the time of one training step (NPC²,
nltcs-sized random binary trees) on each device. Prints one JSON line per check.

    python benchmarks/circuits_device_check.py
"""

from __future__ import annotations

import itertools
import json
import time

import torch

from bayesfn.circuits import MonotonicCircuit, SquaredCircuit


def _same_params(src, dst):
    dst.module_.load_state_dict({k: v.to(dst._device) for k, v in src.module_.state_dict().items()})


def main() -> None:
    from bayesfn.kernels import use_backend

    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device"}))
        return
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (200, 5), generator=g).double()
    allx = torch.tensor(list(itertools.product(range(3), repeat=5)), dtype=torch.float64)
    kinds = ((MonotonicCircuit, {}), (MonotonicCircuit, {"squared": True}), (SquaredCircuit, {}))
    for (cls, kw), backend in itertools.product(kinds, ("torch", "auto")):
        cpu = cls(4, input="categorical", num_replicas=3, **kw).fit(
            x, max_steps=30, progress_bar=False
        )
        gpu = cls(4, input="categorical", num_replicas=3, device="cuda", **kw).fit(
            x.cuda(), max_steps=1, progress_bar=False
        )
        _same_params(cpu, gpu)
        with use_backend(backend):
            _check(cls, kw, backend, cpu, gpu, allx)
    with use_backend("auto"):
        _timing(g)


def _check(cls, kw, backend, cpu, gpu, allx) -> None:
    total = float(torch.logsumexp(gpu.log_prob(allx.cuda()), 0))
    diff = float((gpu.log_prob(allx.cuda()).cpu() - cpu.log_prob(allx)).abs().max())
    s = gpu.sample(500, generator=torch.Generator(device="cuda").manual_seed(0))
    print(
        json.dumps(
            {
                "check": "cuda",
                "backend": backend,
                "model": cls.__name__,
                **kw,
                "log_total_mass": total,
                "max_abs_diff_cpu_cuda": diff,
                "sample_device": str(s.device),
            }
        )
    )


def _timing(g) -> None:
    # one training step on nltcs-like data, both devices
    xb = (torch.rand(512, 16, generator=g) < 0.3).double()
    for device in ("cpu", "cuda"):
        for k in (16, 64):
            m = SquaredCircuit(k, input="bernoulli", num_replicas=8, device=device).fit(
                xb.to(device), max_steps=3, progress_bar=False
            )
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            m.fit(xb.to(device), max_steps=20, progress_bar=False, warm_start=True)
            if device == "cuda":
                torch.cuda.synchronize()
            per_step = (time.perf_counter() - start) / 20
            print(
                json.dumps(
                    {
                        "check": "train step",
                        "device": device,
                        "K": k,
                        "R": 8,
                        "batch": 512,
                        "d": 16,
                        "seconds_per_step": per_step,
                    }
                )
            )


if __name__ == "__main__":
    main()
