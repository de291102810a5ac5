"""Wasserstein-matched functional priors: the critic's W₁ against closed forms, W₁ ≈ 0
when the target is the network prior itself, W₁ decreasing and the fitted scales moving
to the closed-form optimum of a linear model, and clear errors."""

import math

import pytest
import torch

from bayesfn.bayesnn import (
    BNN,
    MLP,
    FlowPrior,
    GaussianPrior,
    HierarchicalPrior,
    fit_functional_prior,
)
from bayesfn.bayesnn.functional_prior import wasserstein_estimate
from bayesfn.covariance import GPSampler

FAST = {"critic_hidden": (64, 64), "num_samples": 128, "progress_bar": False}


def _draws(scale, shift, shape, seed):
    g = torch.Generator().manual_seed(seed)
    return shift + scale * torch.randn(*shape, generator=g)


def test_critic_recovers_closed_form_w1_of_a_mean_shift():
    # W1(N(0, I_M), N(μ, I_M)) = ||μ||; the gradient penalty must hold the slope at 1.
    # (In one dimension a WGAN-GP critic cannot flip the sign of its slope without
    # crossing the penalty's barrier at slope 0, so the checks use M = 10.)
    m, shift = 10, 0.5
    p, q = _draws(1, 0, (256, m), 0), _draws(1, shift, (256, m), 1)
    pe, qe = _draws(1, 0, (256, m), 2), _draws(1, shift, (256, m), 3)
    est = wasserstein_estimate(p, q, f_p_eval=pe, f_q_eval=qe, hidden=(64, 64), steps=100)
    exact = shift * math.sqrt(m)
    # the difference of two sample means along μ has sd sqrt(2/256) = 0.09 (6 % here)
    assert abs(est - exact) < 0.15 * exact


def test_critic_w1_between_isotropic_gaussians_of_different_scale():
    # W1(N(0, I_M), N(0, 4 I_M)) = (2 - 1) E||Z|| = sqrt(2) Γ((M+1)/2) / Γ(M/2)
    m = 10
    exact = math.sqrt(2) * math.exp(math.lgamma((m + 1) / 2) - math.lgamma(m / 2))
    p, q = _draws(1, 0, (256, m), 0), _draws(2, 0, (256, m), 1)
    pe, qe = _draws(1, 0, (256, m), 2), _draws(2, 0, (256, m), 3)
    kw = {"hidden": (64, 64), "steps": 100, "lr": 0.02}
    est = wasserstein_estimate(p, q, f_p_eval=pe, f_q_eval=qe, **kw)
    # the official critic's learning rate. The penalty is soft, so the critic overshoots
    # the Lipschitz bound a little: measured +15 to +30 % at M = 10 (+40 % at M = 50)
    assert exact * 0.85 < est < exact * 1.4
    same = wasserstein_estimate(
        p,
        _draws(1, 0, (256, m), 4),
        f_p_eval=pe,
        f_q_eval=_draws(1, 0, (256, m), 5),
        **kw,
    )
    assert abs(same) < 0.2 * exact


class _LinearPrior:
    """Exact draws of f(x) = a·w·x + s_b·b with w, b ~ N(0, 1): the function-space law of
    a linear model MLP(hidden=()) under N(0, a²) weights and N(0, s_b²) bias."""

    def __init__(self, a, s_b=1.0):
        self.a, self.s_b = a, s_b

    def sample(self, x, num, generator=None):
        w = torch.randn(num, x.shape[1], generator=generator, dtype=torch.float64)
        b = torch.randn(num, 1, generator=generator, dtype=torch.float64)
        return self.a * w @ x.double().T / math.sqrt(x.shape[1]) + self.s_b * b


def _x(n=40, d=1, seed=0):
    return 4 * torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) - 2


def test_w1_is_zero_within_noise_when_the_target_is_the_network_prior():
    x = _x()
    common = {**FAST, "num_iterations": 4, "critic_steps": 60, "lr": 1e-9, "seed": 0}
    kw = {**common, "standardize": False, "critic_threshold": None}
    kw.update(num_train_points=30, num_uniform_points=0)
    # noise level: the same estimator between two independent draws of one law
    self_fit = fit_functional_prior(MLP(hidden=()), GaussianPrior(), _LinearPrior(1.0), x, **kw)
    other = fit_functional_prior(MLP(hidden=()), GaussianPrior(), _LinearPrior(3.0), x, **kw)
    g = torch.Generator().manual_seed(1)
    noise = []
    for i in range(4):
        law = _LinearPrior(1.0)
        xm = x[torch.randperm(40, generator=g)[:30]]
        f = [law.sample(xm, 128, generator=g).float() for _ in range(4)]
        noise.append(
            wasserstein_estimate(
                f[0], f[1], f_p_eval=f[2], f_q_eval=f[3], hidden=(64, 64), steps=60, seed=i
            )
        )
    noise_sd = float(torch.tensor(noise).std())
    mean_self = sum(self_fit.w1) / 4
    # a mean of 4 estimates: 3 noise sds is 6 standard errors
    assert abs(mean_self) < 3 * noise_sd + 0.05
    # the estimator sees a mismatch: a target three times wider is far from zero
    assert sum(other.w1) / 4 > 10 * (abs(mean_self) + noise_sd)


def test_fitted_scales_move_to_the_linear_model_optimum_and_w1_decreases():
    # target: the linear kernel 9 x x' (no bias); optimum weight std 3, bias std 0
    x = _x(60)
    target = GPSampler("linear", variance=9.0)
    res = fit_functional_prior(
        MLP(hidden=()),
        GaussianPrior(),
        target,
        x,
        num_iterations=25,
        critic_steps=40,
        num_train_points=30,
        num_uniform_points=10,
        lr=0.1,
        critic_lr=0.1,
        standardize=False,
        seed=0,
        **{k: v for k, v in FAST.items() if k != "num_samples"},
        num_samples=64,
    )
    scales = {k: float(v.detach()) for k, v in res.prior.scales().items()}
    x2 = float((x**2).mean())

    def gap(s):  # mean |prior variance - target variance| over the training inputs
        return abs(s["layers.0.weight"] ** 2 * x2 + s["layers.0.bias"] ** 2 - 9 * x2)

    assert gap(scales) < 0.5 * gap({"layers.0.weight": 1.0, "layers.0.bias": 1.0})
    assert 2.3 < scales["layers.0.weight"] < 3.7
    assert scales["layers.0.bias"] < 0.6
    assert len(res.w1) == 25 and len(res.critic_w1) == 25
    # the W1 trace: ~20 at the start, then noise around 0 (sd ~4 with S = 64)
    last = sum(res.w1[-15:]) / 15
    assert res.w1[0] > 10 and abs(last) < 0.25 * res.w1[0]


@pytest.mark.parametrize(
    "prior", [GaussianPrior(per="parameter"), HierarchicalPrior(), FlowPrior(num_flows=2)]
)
def test_every_prior_family_fits_and_moves(prior):
    x = _x(30, 2)
    before = {k: v.detach().clone() for k, v in prior.state_dict().items()}
    res = fit_functional_prior(
        MLP(hidden=(8,)),
        prior,
        GPSampler("rbf", lengthscale=0.7),
        x,
        num_iterations=3,
        critic_steps=5,
        num_train_points=10,
        num_uniform_points=5,
        seed=0,
        **{k: v for k, v in FAST.items() if k != "num_samples"},
        num_samples=16,
    )
    assert all(math.isfinite(v) for v in res.w1)
    assert not prior.is_bound  # the prior handed in is copied, not changed
    assert prior.state_dict().keys() == before.keys()
    moved = [not torch.equal(v, res.prior.state_dict()[k]) for k, v in before.items()]
    assert res.prior.is_bound and (not before or any(moved))


def test_a_bnn_gives_its_standardisation_and_takes_the_fitted_prior():
    x = 100 + 10 * _x(30)
    bnn = BNN(MLP(hidden=(4,)), inference="map")
    res = fit_functional_prior(
        bnn,
        None,
        "rbf",
        x,
        num_iterations=2,
        critic_steps=2,
        seed=0,
        num_samples=8,
        progress_bar=False,
    )
    torch.testing.assert_close(res.x_mean, x.mean(0))
    torch.testing.assert_close(res.x_std, x.std(0))
    y = torch.sin(x / 10)
    fitted = BNN(MLP(hidden=(4,)), prior=res.prior, inference="map").fit(
        x, y, max_steps=2, progress_bar=False
    )
    torch.testing.assert_close(
        fitted.prior_.scales()["layers.0.weight"], res.prior.scales()["layers.0.weight"]
    )


def test_multi_output_target_and_critic_sum_over_outputs():
    x = _x(20)
    res = fit_functional_prior(
        MLP(hidden=(4,)),
        GaussianPrior(),
        "rbf",
        x,
        num_outputs=3,
        num_iterations=2,
        critic_steps=2,
        num_samples=8,
        seed=0,
        progress_bar=False,
    )
    assert res.prior.shapes["layers.1.weight"] == (3, 4)
    assert len(res.w1) == 2


def test_bad_inputs_give_clear_errors():
    x = _x(10)
    net = MLP(hidden=(4,))
    with pytest.raises(TypeError, match="bnn_or_net"):
        fit_functional_prior("mlp", GaussianPrior(), "rbf", x)
    with pytest.raises(TypeError, match="prior"):
        fit_functional_prior(net, "gaussian", "rbf", x)
    with pytest.raises(TypeError, match="target"):
        fit_functional_prior(net, GaussianPrior(), 3.0, x)
    with pytest.raises(ValueError, match="unknown kernel"):
        fit_functional_prior(net, GaussianPrior(), "nope", x)
    with pytest.raises(ValueError, match="NaN"):
        fit_functional_prior(net, GaussianPrior(), "rbf", x.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="num_samples"):
        fit_functional_prior(net, GaussianPrior(), "rbf", x, num_samples=1)
    with pytest.raises(ValueError, match="penalty"):
        fit_functional_prior(net, GaussianPrior(), "rbf", x, penalty="l2")
    with pytest.raises(ValueError, match="num_outputs"):
        fit_functional_prior(BNN(net, likelihood="categorical", inference="map"), None, "rbf", x)
    bound = GaussianPrior().bind({"w": (3,)})
    with pytest.raises(ValueError, match="bound to parameters"):
        fit_functional_prior(net, bound, "rbf", x)
    with pytest.raises(ValueError, match="same number of draws"):
        wasserstein_estimate(torch.zeros(4, 2), torch.zeros(5, 2))
