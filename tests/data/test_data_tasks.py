"""Function sets, the training sampler and saved evaluation tasks (bayesfn.data.tasks)."""

import numpy as np
import pytest
import torch

from bayesfn.data import (
    FunctionSampler,
    FunctionSet,
    TaskSet,
    as_function_set,
    make_tasks,
    sample_functions,
)


def test_function_draws_and_observation_noise_are_independent():
    # NDP's official generator reuses one key for both, which makes the noise a copy of
    # the latent normals: y = (L + s I) z. Ours: cov(f, y - f) = 0, cov(y - f) = s^2 I.
    x = torch.tensor([[-1.5], [-0.4], [0.3], [1.2]], dtype=torch.float64)
    draws = 40000
    batch = sample_functions(
        "se",
        draws,
        4,
        x=x,
        lengthscale=0.5,
        variance=1.0,
        noise_std=0.5,
        seed=1,
        dtype=torch.float64,
    )
    f = batch.f[..., 0].numpy()
    e = (batch.y - batch.f)[..., 0].numpy()
    cross = (f - f.mean(0)).T @ (e - e.mean(0)) / draws  # (4, 4)
    # standard error of a cross-covariance of independent variables: sd_f sd_e / sqrt(S)
    se = np.sqrt(np.outer(f.var(0), e.var(0)) / draws)
    assert np.max(np.abs(cross) / se) < 4.5
    np.testing.assert_allclose(np.cov(e.T), 0.25 * np.eye(4), atol=0.02)
    # the reused-key generator would give cov(f, y - f) = 0.5 L L^T-ish, i.e. ~0.5 K
    assert np.max(np.abs(cross)) < 0.02


def test_as_function_set_from_sets_of_varying_size_pads_and_masks():
    sets = [
        (np.zeros((3, 2)), np.arange(3.0)),
        (torch.ones(5, 2), torch.ones(5, 1)),
        (torch.full((1, 2), 2.0), torch.tensor([7.0])),
    ]
    fs = as_function_set(sets, dtype=torch.float64)
    assert fs.x.shape == (3, 5, 2) and fs.y.shape == (3, 5, 1)
    assert fs.mask.sum(1).tolist() == [3, 5, 1]
    assert fs.y[0, :3, 0].tolist() == [0.0, 1.0, 2.0] and fs.y[2, 0, 0] == 7.0
    batch = sample_functions("se", 4, 6, seed=0)
    fb = as_function_set(batch)
    assert fb.mask.all() and torch.equal(fb.y, batch.y)
    pair = as_function_set((batch.x, batch.y))
    assert torch.equal(pair.x, batch.x)
    assert as_function_set(fs) is not fs and len(as_function_set(fs)) == 3


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        ([], ValueError, "empty"),
        ([(np.zeros((3, 1)), np.zeros(4))], ValueError, "same n"),
        ([(np.zeros((3, 1)), np.zeros(3)), (np.zeros((3, 2)), np.zeros(3))], ValueError, "d=2"),
        ([(np.zeros((2, 1)), np.array([0.0, np.nan]))], ValueError, "NaN"),
        (42, TypeError, "FunctionBatch"),
        ([np.zeros(3)], TypeError, "pair"),
    ],
)
def test_as_function_set_bad_inputs(data, error, match):
    with pytest.raises(error, match=match):
        as_function_set(data, name="functions")


def test_function_sampler_draws_padded_batches_reproducibly():
    sampler = FunctionSampler("se", 8, (5, 9), lengthscale=0.25, noise_std=0.05)
    a = sampler(torch.Generator().manual_seed(3))
    b = sampler(torch.Generator().manual_seed(3))
    assert isinstance(a, FunctionSet)
    assert a.x.shape == (8, 9, 1) and torch.equal(a.y, b.y)
    n = int(a.mask[0].sum())
    assert 5 <= n <= 9 and bool(a.mask[:, :n].all()) and not a.mask[:, n:].any()
    counts = {int(sampler(torch.Generator().manual_seed(s)).mask[0].sum()) for s in range(40)}
    assert counts == set(range(5, 10))
    with pytest.raises(ValueError, match="Unknown function family"):
        FunctionSampler("nope", 8, 5)
    with pytest.raises(ValueError, match="num_points"):
        FunctionSampler("se", 8, (5, 2))


def test_tasks_save_and_reload_identically(tmp_path):
    tasks = make_tasks("matern52", 20, lengthscale=0.25, variance=1.0, noise_std=0.05, seed=4)
    assert tasks.x_context.shape == (20, 9, 1) and tasks.x_target.shape == (20, 50, 1)
    counts = tasks.num_context
    assert counts.min() >= 1 and counts.max() <= 9 and len(set(counts.tolist())) > 3
    assert (tasks.x_target.abs() <= 2).all()
    (x_c, y_c), (x_t, y_t) = tasks.task(3)
    assert x_c.shape == (int(counts[3]), 1) and y_t.shape == (50, 1)
    tasks.save(tmp_path / "t")
    again = TaskSet.load(tmp_path / "t")
    for name in ("x_context", "y_context", "context_mask", "x_target", "y_target", "f_target"):
        assert torch.equal(getattr(again, name), getattr(tasks, name))
    assert again.info == tasks.info and again.info["family"] == "matern52"
    # the same seed makes the same tasks; another seed does not
    assert torch.equal(
        make_tasks("matern52", 20, seed=4, lengthscale=0.25).x_target, tasks.x_target
    )
    assert not torch.equal(make_tasks("matern52", 20, seed=5).x_target, tasks.x_target)
    general = make_tasks("se", 5, x_range=(2.0, 6.0), seed=0)
    assert (general.x_target >= 2).all() and (general.x_context >= 2).all()
    with pytest.raises(ValueError, match="num_context"):
        make_tasks("se", 5, num_context=(3, 1))
    with pytest.raises(ValueError, match="task set"):
        (tmp_path / "bad").mkdir()
        import json

        from safetensors.torch import save_file

        save_file({}, str(tmp_path / "bad" / "weights.safetensors"))
        (tmp_path / "bad" / "config.json").write_text(json.dumps({"format": "x", "state": {}}))
        TaskSet.load(tmp_path / "bad")
