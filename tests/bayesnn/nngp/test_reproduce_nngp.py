"""The scale-mixture NNGP reproduction at smoke size, through the registry."""

import json
import math
import time

import numpy as np
import pytest
import torch

from bayesfn import reproduce
from bayesfn.reproduce import nngp
from bayesfn.reproduce.results import write_results


def _uci_available():
    try:
        nngp.paper_raw("yacht")
    except FileNotFoundError:
        return False
    return True


needs_uci = pytest.mark.skipif(not _uci_available(), reason="UCI data are not available")


@needs_uci
def test_smoke_run_writes_the_table_beside_the_paper(tmp_path):
    pytest.importorskip("matplotlib")
    module = reproduce.load("nngp")
    assert module is nngp
    start = time.perf_counter()
    results = module.run(scale="smoke", seeds=[0], out=tmp_path, mnist=False)
    assert time.perf_counter() - start < 90
    path = write_results(results, tmp_path)
    loaded = json.loads(path.read_text())
    assert loaded["scale"] == "smoke" and loaded["seeds"] == [0]
    assert loaded["protocol"] == "paper"
    datasets = nngp.SCALES["smoke"]["datasets"]
    main = [r for r in loaded["rows"] if r["paper"] is not None]
    assert len(main) == 3 * len(datasets)
    for row in main:
        assert math.isfinite(row["ours"])
        name, method = row["setting"], row["metric"].split("(")[1].rstrip(")")
        assert row["paper"] == nngp.PAPER_NLL[name][nngp.METHODS.index(method)]
    # the other scales are reported beside it: original units differ by log y_std
    by_key = {(r["setting"], r["metric"]): r["ours"] for r in loaded["rows"]}
    for name in datasets:
        log_std = loaded["details"][name][0]["log_y_std"]
        for m in nngp.METHODS:
            latent = by_key[(name, f"test NLL ({m})")]
            assert by_key[(name, f"test NLL, latent, original units ({m})")] == pytest.approx(
                latent + log_std, abs=1e-12
            )
            y_pred = by_key[(name, f"test NLL, y predictive ({m})")]
            assert by_key[(name, f"test NLL, y predictive, original units ({m})")] == pytest.approx(
                y_pred + log_std, abs=1e-12
            )
    assert loaded["max_burr_quadrature_error"] < 1e-3
    assert (tmp_path / "nngp_regression_nll.png").exists()


@needs_uci
def test_paper_split_follows_the_authors_protocol():
    """80/10/10 of the RandomState(10) permutation; x and y standardised with the first
    80 %'s statistics; the test set fixed while train and validation are re-shuffled."""
    x_raw, y_raw = nngp.paper_raw("yacht")
    assert x_raw.shape == (307, 6)  # 308 rows less the one their header read drops
    a, b = nngp.paper_split("yacht", 10), nngp.paper_split("yacht", 11)
    n = 307
    assert a["x_train"].shape[0] == int(0.8 * n) == b["x_train"].shape[0]
    assert a["x_valid"].shape[0] == int(0.1 * n)
    assert a["x_test"].shape[0] == n - int(0.8 * n) - int(0.1 * n)
    torch.testing.assert_close(a["x_test"], b["x_test"], rtol=0, atol=0)
    torch.testing.assert_close(a["y_test"], b["y_test"], rtol=0, atol=0)
    assert not torch.equal(a["y_train"], b["y_train"])
    pool_a = torch.sort(torch.cat([a["y_train"], a["y_valid"]]).ravel()).values
    pool_b = torch.sort(torch.cat([b["y_train"], b["y_valid"]]).ravel()).values
    torch.testing.assert_close(pool_a, pool_b, rtol=0, atol=0)
    perm = np.random.RandomState(10).permutation(n)
    first = y_raw[perm][: int(0.8 * n)]
    expected = (y_raw[perm][-a["y_test"].shape[0] :] - first.mean()) / first.std()
    np.testing.assert_allclose(a["y_test"].numpy()[:, 0], expected, rtol=1e-12)
    assert a["y_std"] == pytest.approx(first.std(), rel=1e-12)


def test_paper_synthetic_sets_have_the_stated_design():
    xa, ya = nngp.paper_raw("synthetic_a")
    xb, yb = nngp.paper_raw("synthetic_b")
    assert xa.shape == (100, 1) and xb.shape == (300, 1)
    np.testing.assert_allclose(np.diff(xa[:, 0]), 100 / 99, rtol=1e-12)
    # Cauchy-type noise on B: its extremes dwarf those of the Gaussian-noise set A
    assert np.abs(yb).max() > 5 * np.abs(ya).max()


@pytest.mark.slow
@needs_uci
def test_marginal_likelihood_protocol_still_runs(tmp_path):
    pytest.importorskip("matplotlib")
    results = nngp.run(scale="smoke", protocol="ml", datasets=["yacht"], out=tmp_path)
    assert results["protocol"] == "ml"
    assert len(results["rows"]) == 3 and all(math.isfinite(r["ours"]) for r in results["rows"])
    with pytest.raises(ValueError, match="protocol"):
        nngp.run(scale="smoke", protocol="bayes", out=tmp_path)
    with pytest.raises(ValueError, match="unknown data set"):
        nngp.run(scale="smoke", datasets=["iris"], out=tmp_path)


def test_synthetic_sets_have_the_stated_sizes_and_noise():
    xa, ya, xta, yta = nngp.synthetic("synthetic_a", 0)
    xb, yb, xtb, ytb = nngp.synthetic("synthetic_b", 0)
    assert xa.shape[0] + xta.shape[0] == 100 and xb.shape[0] + xtb.shape[0] == 300
    assert abs(float(ya.mean())) < 1e-12 and abs(float(ya.std(unbiased=False)) - 1) < 1e-12

    # Cauchy noise gives far heavier tails than the Gaussian set: compare kurtosis
    def kurtosis(v):
        v = v.numpy().ravel()
        return float(((v - v.mean()) ** 4).mean() / v.var() ** 2)

    assert kurtosis(yb) > 2 * kurtosis(ya)
    assert np.isfinite(kurtosis(ytb))


def test_run_adds_the_mnist_table_by_default(tmp_path, monkeypatch):
    from bayesfn.reproduce import nngp_mnist

    calls = []

    def fake_run_mnist(*, scale, seed, device, out):
        calls.append((scale, seed, device))
        row = {"setting": "mnist clean", "metric": "accuracy % (nngp)", "ours": 1.0}
        return {"rows": [row], "plots": ["nngp_mnist_nll.png"], "seconds": 0.0}

    monkeypatch.setattr(nngp_mnist, "run_mnist", fake_run_mnist)
    monkeypatch.setattr(nngp, "run_one_paper", _fake_run_one_paper)
    results = nngp.run(scale="smoke", seeds=[3], out=tmp_path)
    assert calls == [("smoke", 3, "cpu")]
    assert results["rows"][-1]["setting"] == "mnist clean"
    assert results["plots"] == ["nngp_regression_nll.png", "nngp_mnist_nll.png"]
    assert results["mnist"] == {"seconds": 0.0}
    nngp.run(scale="smoke", seeds=[3], out=tmp_path, datasets=["yacht"])
    assert len(calls) == 1  # a subset of the regression sets skips MNIST


def _fake_run_one_paper(name, seed, cfg, device="cpu"):
    out = {"log_y_std": 0.0, "burr12_quadrature_error": 0.0}
    for m in nngp.METHODS:
        out[m] = out[f"{m}_y"] = 1.0
        out[f"{m}_chosen"] = {}
    return out
