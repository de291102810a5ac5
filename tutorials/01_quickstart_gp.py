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
# # Quickstart: Gaussian-process regression through `fit()` / `posterior()`
#
# Every model in bayesfn follows one contract: build it with its settings, `fit` it to
# data, and ask it for a `posterior` at new inputs. The posterior is a distribution
# over what the model predicts, with shapes `batch + (n, m)`: `n` points, `m` outputs.
#
# This notebook fits an exact GP to the Snelson 1-D data set when it is available
# (under `../shared/data/` or `$BAYESFN_DATA`) and to a synthetic sinusoid otherwise.
# Set `SMOKE_TEST=1` to run it at a tiny size.

# %%
import os

import matplotlib.pyplot as plt
import torch

from bayesfn import metrics
from bayesfn.plotting import plot_predictive_1d
from bayesfn.processes import GaussianProcess

SMOKE_TEST = bool(os.environ.get("SMOKE_TEST"))
torch.manual_seed(0)

# %% [markdown]
# ## Data

# %%
from bayesfn.data import load_snelson

try:
    snelson = load_snelson()  # ../shared/data, or the folder in $BAYESFN_DATA
    x, y = snelson.x_train, snelson.y_train
except FileNotFoundError as err:
    print(f"Snelson data not found ({err}); using a synthetic sinusoid instead")
    x = torch.rand(200, 1, dtype=torch.float64) * 6
    y = torch.sin(2 * x) + 0.2 * torch.randn_like(x)
if SMOKE_TEST:
    x, y = x[:40], y[:40]
print(x.shape, y.shape)

# %% [markdown]
# ## Fit
# `fit` maximises the exact log marginal likelihood over the kernel hyperparameters and
# returns the model itself. Numpy arrays are accepted as they are.

# %%
num_steps = 30 if SMOKE_TEST else 300
gp = GaussianProcess(kernel="rbf").fit(x, y, max_steps=num_steps, progress_bar=False)
gp.fit_result_.diagnostics["hyperparameters"]

# %% [markdown]
# ## Predict
# `posterior(x)` is over the latent function; `observation_noise=True` gives the
# predictive of new noisy observations. Both are `GaussianPosterior`s.

# %%
x_test = torch.linspace(float(x.min()) - 1, float(x.max()) + 1, 300, dtype=torch.float64)[:, None]
latent = gp.posterior(x_test)
print(latent, latent.mean.shape, latent.variance.shape)

ax = plot_predictive_1d(latent, x_test, x_obs=x, y_obs=y, num_samples=3)
ax.set_title("GP posterior of f with a 95 % band and three sample paths")
plt.show()

# %% [markdown]
# ## Evaluate
# Metrics take the posterior itself: the NLL uses its exact marginal densities.

# %%
predictive = gp.posterior(x, observation_noise=True)
y_col = torch.as_tensor(y, dtype=torch.float64).reshape(-1, 1)
print(f"train RMSE {metrics.rmse(predictive, y_col):.3f}")
print(f"train NLL  {metrics.nll(predictive, y_col):.3f}")
print(f"95% coverage {metrics.coverage(predictive, y_col):.2f}")
assert 0.8 < metrics.coverage(predictive, y_col) <= 1.0

# %% [markdown]
# ## Save and load
# Models save to a folder of JSON settings and safetensors weights; loading never
# unpickles anything.

# %%
import tempfile

with tempfile.TemporaryDirectory() as tmp:
    gp.save(f"{tmp}/gp")
    again = GaussianProcess.load(f"{tmp}/gp")
    assert torch.equal(again.posterior(x_test).mean, latent.mean)
print("round trip ok")
