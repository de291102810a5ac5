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
# # Functional priors: a BNN prior that behaves like a Gaussian process
#
# A weight prior such as `W ~ N(0, 1)` says little about the *functions* a network
# draws: with depth and width its draws can be too wiggly or too flat, and the
# posterior inherits that where data are missing. Tran et al. (JMLR 2022) fit the weight
# prior's hyperparameters so that the network's function draws match a chosen Gaussian
# process, by minimising the 1-Wasserstein distance between the two distributions of
# function values at random measurement points (a Lipschitz critic estimates it).
#
# `fit_functional_prior(net, prior, target, x)` does that for any prior of
# `bayesfn.bayesnn` (Gaussian per layer or per parameter, hierarchical, normalising
# flow); the fitted prior then goes into `BNN(net, prior=...)`.
#
# Set `SMOKE_TEST=1` to run at a tiny size.

# %%
import os

import matplotlib.pyplot as plt
import torch

from bayesfn import metrics
from bayesfn.bayesnn import BNN, MLP, SGHMC, GaussianPrior, fit_functional_prior
from bayesfn.bayesnn.nets import batched_forward
from bayesfn.covariance import GPSampler
from bayesfn.plotting import plot_predictive_1d
from bayesfn.processes import GaussianProcess

SMOKE_TEST = bool(os.environ.get("SMOKE_TEST"))
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)

# %% [markdown]
# ## Data with a gap
# 64 noisy values of a smooth random function on `[-5, 5]`, none in `(-1, 3)`.

# %%
n = 64
x = torch.cat([-5 + 4 * torch.rand(n // 2, generator=g), 3 + 2 * torch.rand(n // 2, generator=g)])
x = x.sort().values[:, None].double()
x_test = torch.linspace(-6, 6, 200, dtype=torch.float64)[:, None]
truth = GPSampler("rbf", lengthscale=1.8, variance=1.6**2)
f = truth.sample(torch.cat([x, x_test]), 1, generator=g)[0]
y = f[:n, None] + 0.3 * torch.randn(n, 1, generator=g, dtype=torch.float64)
y_test = f[n:, None] + 0.3 * torch.randn(200, 1, generator=g, dtype=torch.float64)
in_gap = (x_test[:, 0] > -1) & (x_test[:, 0] < 3)
plt.scatter(x[:, 0], y[:, 0], s=10)
plt.title("training data")
plt.show()

# %% [markdown]
# ## Prior draws before matching
# A 3x50 tanh network with `W / sqrt(fan_in)` layers and `N(0, 1)` weights and biases,
# against the target: an RBF GP with lengthscale 0.6 on standardised inputs.

# %%
net = MLP(hidden=(50, 50, 50), activation="tanh")
module = net.build(1, 1)
xs = ((x_test - x.mean()) / x.std()).float()  # the units the BNN works in
target = GPSampler("rbf", lengthscale=0.6, variance=1.0)


def prior_draws(prior, num=200):
    prior = prior if prior.is_bound else prior.bind(module)
    return batched_forward(module, prior.sample(num, generator=g), xs)[..., 0]


fixed_draws = prior_draws(GaussianPrior())
gp_draws = target.sample(xs.double(), 200, generator=g)
fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharey=True)
axes[0].plot(x_test[:, 0], fixed_draws[:6].T)
axes[0].set_title("N(0, 1) prior: function draws")
axes[1].plot(x_test[:, 0], gp_draws[:6].T)
axes[1].set_title("target GP draws")
plt.show()

# %% [markdown]
# ## Matching the prior to the GP
# One scale per layer for weights and one for biases (GPi-G). The official 1-D demo
# uses 800 outer iterations of 1,000 critic steps; a few dozen suffice to see it work.

# %%
iters, critic_steps = (15, 20) if SMOKE_TEST else (100, 50)
result = fit_functional_prior(
    net,
    GaussianPrior(),
    target,
    x,
    num_iterations=iters,
    critic_steps=critic_steps,
    num_samples=64 if SMOKE_TEST else 128,
    num_train_points=n,
    num_uniform_points=n,
    seed=0,
    progress_bar=False,
)
result.plot(window=5)
plt.show()
for name, s in result.prior.scales().items():
    print(f"{name:16s} std {float(s.detach()):.3f}")

# %% [markdown]
# The W₁ estimate starts high and falls to the estimator's noise level.

# %%
first = result.w1[0]
late = sum(result.w1[-5:]) / 5
print(f"W1: first {first:.2f}, mean of the last five {late:.2f}")
assert late < 0.5 * first

# %% [markdown]
# ## Prior draws after matching
# The fitted prior's pointwise variance moves toward the GP's (1 everywhere).

# %%
fitted_draws = prior_draws(result.prior)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(x_test[:, 0], fitted_draws[:6].detach().T)
ax.set_title("GP-induced prior: function draws")
plt.show()
var_fixed = float(fixed_draws.var(0).mean())
var_fitted = float(fitted_draws.detach().var(0).mean())
print(f"mean pointwise prior variance: N(0,1) {var_fixed:.2f}, fitted {var_fitted:.2f}, GP 1.00")
assert abs(var_fitted - 1.0) < abs(var_fixed - 1.0)

# %% [markdown]
# ## Posteriors by SGHMC, against the exact GP
# Two chains of scale-adapted SGHMC per prior; the exact GP fitted by marginal
# likelihood is the reference.

# %%
sghmc = SGHMC(
    num_burn_in=100 if SMOKE_TEST else 1000,
    num_samples=10 if SMOKE_TEST else 20,
    thin=10 if SMOKE_TEST else 100,
    num_discard=0,
    num_chains=2,
)
posts = {}
for name, prior in (("N(0, 1)", GaussianPrior()), ("GP-induced", result.prior)):
    bnn = BNN(net, prior=prior, inference=sghmc).fit(x, y, seed=0, progress_bar=False)
    posts[name] = bnn.posterior(x_test.float(), observation_noise=True)
gp = GaussianProcess(kernel="rbf").fit(x, y, progress_bar=False)
posts["exact GP"] = gp.posterior(x_test, observation_noise=True)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.5), sharey=True)
for ax, (name, post) in zip(axes, posts.items(), strict=True):
    plot_predictive_1d(post, x_test.to(post.dtype), x_obs=x, y_obs=y, ax=ax, num_samples=0)
    ax.set_title(name)
plt.show()

# %%
for name, post in posts.items():
    yt = y_test.to(post.dtype)
    nll = metrics.nll(post, yt, reduction="none").reshape(-1)
    width = post.stddev.reshape(-1)
    print(
        f"{name:11s} RMSE {metrics.rmse(post, yt):.3f}  NLL {float(nll.mean()):.3f}  "
        f"NLL in gap {float(nll[in_gap].mean()):.3f}  "
        f"sd in gap / outside {float(width[in_gap].mean()):.2f} / "
        f"{float(width[~in_gap].mean()):.2f}"
    )
# every model is least certain in the gap
for post in posts.values():
    sd = post.stddev.reshape(-1)
    assert sd[in_gap].mean() > sd[~in_gap].mean()

# %% [markdown]
# ## When does a good functional prior matter?
# Where the data say little: in gaps, far from the inputs, with few data or many
# parameters per datum. There the posterior is close to the prior, so a weight prior
# whose functions look like the GP we would have chosen gives GP-like bands; a default
# `N(0, 1)` prior gives whatever its architecture implies. With plenty of data the
# likelihood dominates and the two posteriors agree. `bayesfn reproduce funcprior`
# runs the paper's comparisons (1-D, UCI regression with FG / GPi-G / FH / GPi-H, and
# classification).
