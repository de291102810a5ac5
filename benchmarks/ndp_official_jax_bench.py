"""The official JAX/Haiku NDP (``vdutor/neural-diffusion-processes``) timed at the same
sizes as ``benchmarks/ndp_bench.py``: training steps per second and conditional
(RePaint) samples per second. Nothing of the official code is copied here; it is imported
from a checkout given by ``--official``.

The official code pins jax 0.4.13 (it uses ``jax.random.KeyArray``, removed later);
install it in a separate virtual environment:

    python3.11 -m venv /tmp/jax413
    /tmp/jax413/bin/pip install jax==0.4.13 jaxlib==0.4.13 dm-haiku==0.0.10 optax==0.1.7 \
        einops check_shapes simple-pytree "numpy<2" "scipy<1.12"
    git clone https://github.com/vdutor/neural-diffusion-processes /tmp/ndp_official
    taskset -c 0 /tmp/jax413/bin/python benchmarks/ndp_official_jax_bench.py \
        --official /tmp/ndp_official

A training step is the official ``loss`` (the network applied per task under ``vmap``, as
in ``experiments/regression/main.py``), its gradient and an optax update (global-norm clip
1.0 + Adam), jitted. Conditional sampling is ``GaussianDiffusion.conditional_sample``
``vmap``-ped over the draws and jitted, timed on a 3-level schedule and scaled to T levels
(every level costs U + 1 network calls), as in ``ndp_bench.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, help="checkout of the official repo")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=500)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=59)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.official))

    import haiku as hk
    import jax
    import jax.numpy as jnp
    import optax
    from neural_diffusion_processes.model import BiDimensionalAttentionModel
    from neural_diffusion_processes.process import GaussianDiffusion, cosine_schedule, loss
    from neural_diffusion_processes.types import Batch

    @hk.without_apply_rng
    @hk.transform
    def network(t, y, x, mask):
        return BiDimensionalAttentionModel(args.layers, args.hidden, args.heads)(x, y, t, mask)

    def per_task(params, t, yt, x, mask, *, key):
        # one task (N, D) -> the batched network on a batch of one
        out = network.apply(params, jnp.reshape(t, (-1,)), yt[None], x[None], mask[None])
        return out[0]

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-2, 2, (args.batch, args.points, 1)), dtype=jnp.float32)
    y = jnp.asarray(rng.standard_normal((args.batch, args.points, 1)), dtype=jnp.float32)
    mask = jnp.zeros((args.batch, args.points))
    key = jax.random.PRNGKey(0)
    params = network.init(key, jnp.zeros((1,)), y[:1], x[:1], mask[:1])
    process = GaussianDiffusion(cosine_schedule(3e-4, 0.5, args.num_steps))
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    state = opt.init(params)
    batch = Batch(x_target=x, y_target=y, mask_target=mask)

    def objective(p, b, k):
        return loss(
            process,
            lambda t, yt, xx, m, *, key: per_task(p, t, yt, xx, m, key=key),
            b,
            k,
            num_timesteps=args.num_steps,
            loss_type="l1",
        )

    @jax.jit
    def step(p, s, b, k):
        value, grads = jax.value_and_grad(objective)(p, b, k)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    def timed(fn, repeats):
        jax.block_until_ready(fn())  # compile + warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    holder = {"p": params, "s": state}

    def train():
        holder["p"], holder["s"], value = step(holder["p"], holder["s"], batch, key)
        return value

    train_s = timed(train, args.repeats)

    levels = 3
    short = GaussianDiffusion(cosine_schedule(3e-4, 0.5, levels))
    xc, yc = x[0, :5], y[0, :5]
    xt = x[0, 5 : 5 + args.targets]

    def one_draw(k):
        return short.conditional_sample(
            k,
            xt,
            None,
            x_context=xc,
            y_context=yc,
            mask_context=None,
            model_fn=lambda t, yt, xx, m, *, key: per_task(holder["p"], t, yt, xx, m, key=key),
            num_inner_steps=args.inner,
        )

    draws = jax.jit(jax.vmap(one_draw))
    keys = jax.random.split(key, args.samples)
    # the official outer loop runs T - 1 levels (the last level is skipped)
    per_level = timed(lambda: draws(keys), args.repeats) / (levels - 1)
    per_batch = per_level * args.num_steps
    print(f"jax {jax.__version__}, haiku {hk.__version__}")
    print(
        f"official JAX: train steps/s {1.0 / train_s:.4g}, conditional samples/s "
        f"{args.samples / per_batch:.4g}, s per conditional batch {per_batch:.4g}"
    )


if __name__ == "__main__":
    main()
