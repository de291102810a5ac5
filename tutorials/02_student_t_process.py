# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # NNGP vs Student-t process on heavy-tailed data
#
# An infinitely wide network is a Gaussian process: the NNGP. Lee et al. (ICLR 2022)
# put a prior on the variance σ² of the network's last layer. With an inverse-gamma
# prior the result is a **Student-t process**, exact in closed form; with other priors
# (Burr XII, half-Cauchy, log-normal) it is a heavy-tailed process whose one-dimensional
# σ² posterior we integrate by quadrature.
#
# `ScaleMixtureNNGP` covers all of them through one `prior=` setting:
#
# * `prior="point_mass"`: the plain NNGP (a `GaussianPosterior`);
# * `prior="inverse_gamma"`: the Student-t process (a `StudentTPosterior`);
# * `prior="burr12"` etc.: a mixture of Gaussians over σ² (a `MixturePosterior`).
#
# Set `SMOKE_TEST=1` to run at a tiny size.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from bayesfn import metrics
from bayesfn.bayesnn import NNGPKernel, ScaleMixtureNNGP
from bayesfn.plotting import plot_predictive_1d

SMOKE_TEST = bool(os.environ.get("SMOKE_TEST"))
STEPS = 10 if SMOKE_TEST else 300
torch.manual_seed(0)

# %% [markdown]
# ## Data with outliers
# A smooth function observed with Student-t noise of 1.5 degrees of freedom: most
# points sit close to the curve, a few land far away.

# %%
rng = np.random.default_rng(0)
n = 30 if SMOKE_TEST else 120
f = lambda t: np.sin(2 * t) + 0.3 * t  # noqa: E731
x = np.sort(rng.uniform(-3, 3, n))[:, None]
y = f(x) + 0.15 * rng.standard_t(1.5, size=(n, 1))
x_test = np.linspace(-3.5, 3.5, 200)[:, None]
y_test = f(x_test) + 0.15 * rng.standard_t(1.5, size=(200, 1))
x, y, x_test, y_test = (torch.as_tensor(a, dtype=torch.float64) for a in (x, y, x_test, y_test))
plt.scatter(x[:, 0], y[:, 0], s=10)
plt.title("training data")
plt.show()

# %% [markdown]
# ## The NNGP kernel
# `NNGPKernel` is a GPyTorch kernel in neural-tangents' `stax` conventions; here the
# covariance of a 2-hidden-layer ReLU network between a few inputs.

# %%
kernel = NNGPKernel(depth=2, activation="relu", w_std=1.5, b_std=0.1)
with torch.no_grad():
    print(kernel(x[:4]).to_dense())

# %% [markdown]
# ## Fit three processes
# Hyperparameters (σ_w, σ_b, noise and the prior's a, b for the Student-t) are fitted
# by the exact marginal likelihood. The noise is scaled by σ² along with the kernel,
# so the Student-t process is conjugate and exact.

# %%
models = {
    "NNGP": ScaleMixtureNNGP(depth=2, prior="point_mass"),
    "Student-t (inverse gamma)": ScaleMixtureNNGP(depth=2, prior="inverse_gamma"),
    "Burr XII": ScaleMixtureNNGP(depth=2, prior="burr12", prior_params={"c": 2.0, "d": 1.0}),
}
test_nll = {}
for name, model in models.items():
    model.fit(x, y, max_steps=STEPS, progress_bar=False)
    post = model.posterior(x_test, observation_noise=True)
    test_nll[name] = metrics.nll(post, y_test)
    print(
        f"{name:28s} {type(post).__name__:18s} test NLL {test_nll[name]:6.3f}  "
        f"95% coverage {metrics.coverage(post, y_test):.2f}  "
        f"log evidence {model.fit_result_.diagnostics['log_marginal_likelihood']:.2f}"
    )

# %% [markdown]
# On heavy-tailed test data both heavy-tailed processes beat the NNGP in test NLL (in
# the full run 0.886 and 0.872 against 0.935; at smoke size 1.35 against 2.46).

# %%
assert test_nll["Student-t (inverse gamma)"] < test_nll["NNGP"]
assert test_nll["Burr XII"] < test_nll["NNGP"]

# %% [markdown]
# The Burr XII process reports how accurate its σ² quadrature is (the difference to a
# rule with half as many nodes) and the effective number of mixture components.

# %%
d = models["Burr XII"].fit_result_.diagnostics
print(f"quadrature error {d['quadrature_error']:.1e}, effective components {d['ess']:.1f}")

# %% [markdown]
# ## Predictive bands
# The Student-t predictive has heavier tails: its 95 % band is wider far from the data
# relative to its width near the data, and outliers cost it far less log density.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), sharey=True)
for ax, (name, model) in zip(axes, models.items(), strict=True):
    plot_predictive_1d(
        model.posterior(x_test, observation_noise=True),
        x_test,
        x_obs=x,
        y_obs=y,
        ax=ax,
        num_samples=0,
    )
    ax.set_title(name)
    ax.set_ylim(-4, 4)
plt.show()

# %% [markdown]
# ## The posterior over σ²
# For the inverse gamma it is `IG(a + n/2, b + q/2)` with `q = yᵀ(K + τ²I)⁻¹y`; for the
# Burr XII prior it is normalised by the same quadrature that builds the mixture.
# `scale_posterior` returns the log density.

# %%
grid = torch.logspace(-4, 2, 600, dtype=torch.float64)
for name in ("Student-t (inverse gamma)", "Burr XII"):
    density = models[name].scale_posterior(grid).exp()
    plt.plot(grid, density, label=name)
    # a density over σ² integrates to one (trapezoid rule on the grid)
    mass = float(torch.trapezoid(density, grid))
    print(name, "mass on the grid:", mass)
    assert abs(mass - 1) < 1e-3
plt.xscale("log")
plt.xlabel("σ² (last-layer variance)")
plt.ylabel("p(σ² | y)")
plt.legend()
plt.show()

# %% [markdown]
# ## Save and load
# Like every bayesfn model, the fitted process saves to JSON + safetensors.

# %%
import tempfile

with tempfile.TemporaryDirectory() as tmp:
    models["Student-t (inverse gamma)"].save(f"{tmp}/t")
    again = ScaleMixtureNNGP.load(f"{tmp}/t")
    a = again.posterior(x_test[:5]).mean
    assert torch.equal(a, models["Student-t (inverse gamma)"].posterior(x_test[:5]).mean)
print("round trip ok")
