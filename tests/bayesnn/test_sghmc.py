"""SGHMC as a BNN inference: the linear-Gaussian posterior in closed form, chains that do
not depend on how many run beside them (Gibbs steps included), and the plumbing."""

import math

import arviz as az
import pytest
import torch

from bayesfn.bayesnn import BNN, MLP, SGHMC, GaussianLikelihood, HierarchicalPrior
from bayesfn.sampling import AdaptiveSGHMCKernel, SGHMCKernel

D = torch.float64


def _linear_data(n=40, d=2, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=D)
    y = x @ torch.tensor([[1.0], [-0.5]], dtype=D) + 0.3
    return x, y + math.sqrt(noise) * torch.randn(y.shape, generator=g, dtype=D)


def test_linear_bnn_posterior_matches_bayesian_linear_regression():
    """No hidden layer: f = x Wᵀ/sqrt(d) + b with N(0, 1) priors, Gaussian noise 0.1.
    The posterior of f at test points is Gaussian in closed form; SGHMC on minibatches
    of 20 of the 40 points (N/|B| = 2) must reproduce its mean and variance."""
    noise = 0.1
    x, y = _linear_data(noise=noise)
    model = BNN(
        MLP(hidden=()),
        likelihood=GaussianLikelihood(noise),
        inference=SGHMC(
            lr=0.05,
            mdecay=0.3,
            num_burn_in=1000,
            num_samples=110,
            thin=20,
            num_discard=10,
            num_chains=8,
            batch_size=20,
        ),
        standardize=False,
        dtype=D,
    ).fit(x, y, seed=0, progress_bar=False)

    phi = torch.cat([x / math.sqrt(2), torch.ones(40, 1, dtype=D)], 1)
    cov = torch.linalg.inv(phi.T @ phi / noise + torch.eye(3, dtype=D))
    mean = cov @ phi.T @ y / noise
    x_test = torch.tensor([[0.0, 0.0], [1.5, -1.0], [-2.0, 2.5]], dtype=D)
    phi_test = torch.cat([x_test / math.sqrt(2), torch.ones(3, 1, dtype=D)], 1)
    f_mean = (phi_test @ mean).squeeze(-1)
    f_var = torch.einsum("ni,ij,nj->n", phi_test, cov, phi_test)

    post = model.posterior(x_test)
    assert post.num_chains == 8 and post.chain_samples.shape == (8, 100, 3, 1)
    draws = post.chain_samples[..., 0].numpy()  # (C, S, n)
    for i in range(3):
        ess = float(az.ess(draws[..., i]))
        assert ess > 300, ess
        sd = f_var[i].sqrt()
        assert abs(post.mean[i, 0] - f_mean[i]) < 4 * sd / math.sqrt(ess)
        # 4 standard errors of a variance, plus 5 % for the sampler's known bias
        assert abs(post.variance[i, 0] / f_var[i] - 1) < 0.05 + 4 * math.sqrt(2 / ess)
    rhat = az.rhat(post.to_inference_data().posterior_predictive)["f"].values
    assert (rhat < 1.05).all()


def test_chains_do_not_depend_on_how_many_run_with_gibbs_steps():
    """Chain c starts, steps, shuffles and Gibbs-samples from generators of (seed, c):
    the first two chains of a 3-chain run are those of a 2-chain run."""
    x, y = _linear_data(n=30, seed=1)

    def fit(num_chains):
        inference = SGHMC(
            num_burn_in=30,
            num_samples=4,
            thin=5,
            num_discard=1,
            num_chains=num_chains,
            batch_size=8,
            resample_prior_every=7,
        )
        return BNN(MLP((6,)), prior=HierarchicalPrior(), inference=inference, dtype=D).fit(
            x, y, seed=3, progress_bar=False
        )

    two, three = fit(2), fit(3)
    for k, v in two.state_["draws"].items():
        assert v.shape[:2] == (2, 3)
        torch.testing.assert_close(three.state_["draws"][k][:2], v, rtol=1e-12, atol=1e-12)
    prior_state = three.state_["prior_state"]
    assert set(prior_state) == {n for n, _ in three.target_.module.named_parameters()}
    for k, v in prior_state.items():
        assert v.shape == (3, 3) and (v > 0).all()  # a precision per chain, draw and layer
        torch.testing.assert_close(two.state_["prior_state"][k], v[:2], rtol=1e-12, atol=1e-12)
    # the Gibbs steps changed the precisions between draws
    assert not torch.equal(
        prior_state["layers.0.weight"][:, 0], prior_state["layers.0.weight"][:, 1]
    )


def test_defaults_are_the_official_uci_settings():
    s = SGHMC()
    assert (s.lr, s.mdecay, s.batch_size, s.grad_clip) == (0.01, 0.01, 32, 100.0)
    assert (s.num_burn_in, s.thin, s.num_samples, s.num_discard, s.num_chains) == (
        2000,
        2000,
        40,
        10,
        4,
    )
    assert s.resample_prior_every == 1000 and s.adaptive
    assert isinstance(s.kernel(), AdaptiveSGHMCKernel)
    assert isinstance(SGHMC(adaptive=False).kernel(), SGHMCKernel)
    assert BNN().inference.get_config() == s.get_config()  # the BNN's default inference


def test_save_and_load_keep_the_draws(tmp_path):
    x, y = _linear_data(n=20, seed=2)
    inference = SGHMC(num_burn_in=10, num_samples=3, thin=2, num_discard=1, num_chains=2)
    model = BNN(MLP((4,)), inference=inference, dtype=D).fit(x, y, seed=0, progress_bar=False)
    model.save(tmp_path / "m")
    loaded = BNN.load(tmp_path / "m")
    x_test = torch.randn(5, 2, dtype=D)
    a, b = model.posterior(x_test), loaded.posterior(x_test)
    assert torch.equal(a.chain_samples, b.chain_samples)
    assert model.fit_result_.num_steps == 10 + 3 * 2


def test_plain_sghmc_runs_through_the_bnn():
    x, y = _linear_data(n=20, seed=4)
    inference = SGHMC(
        lr=1e-3,
        adaptive=False,
        num_burn_in=5,
        num_samples=2,
        thin=2,
        num_discard=0,
        num_chains=2,
        batch_size=None,
    )
    model = BNN(MLP((4,)), inference=inference, dtype=D).fit(x, y, seed=0, progress_bar=False)
    assert model.fit_result_.diagnostics["kernel"] == "SGHMC"
    assert model.posterior(x[:3]).chain_samples.shape == (2, 2, 3, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0.0}, "lr must be positive"),
        ({"lr": -0.1}, "lr must be positive"),
        ({"mdecay": 2.0}, r"mdecay .* must lie in \(0, 1\]"),
        ({"grad_clip": -1.0}, "grad_clip must be positive"),
        ({"thin": 0}, "thin must be an integer >= 1; got 0"),
        ({"num_samples": 0}, "num_samples must be an integer >= 1"),
        ({"num_samples": 5, "num_discard": 5}, "num_discard must be less than num_samples"),
        ({"num_chains": 0}, "num_chains must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"num_burn_in": -1}, "num_burn_in must be an integer >= 0"),
        ({"init": "zeros"}, "init must be 'default' or 'prior'"),
    ],
)
def test_bad_settings_raise_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGHMC(**kwargs)


def test_unknown_fit_option_is_refused():
    x, y = _linear_data(n=10)
    model = BNN(MLP((3,)), inference=SGHMC(num_burn_in=1, num_samples=2, thin=1, num_discard=0))
    with pytest.raises(TypeError, match="unexpected option"):
        model.fit(x, y, max_stepz=3, progress_bar=False)
