"""MAF tabular sets: the preprocessing on small synthetic raw data (checked against
hand-computed splits and statistics) and the partial MINIBOONE copy."""

import numpy as np
import pandas as pd
import pytest
import torch

from bayesfn.data.maf import load_maf, load_miniboone_partial, maf_names, preprocess


def test_names_and_missing_data_message(tmp_path):
    assert maf_names() == ("power", "gas", "hepmass", "miniboone", "bsds300")
    (tmp_path / "maf").mkdir()
    with pytest.raises(FileNotFoundError, match=r"zenodo\.org/record/1161203"):
        load_maf("power", root=tmp_path)
    with pytest.raises(ValueError, match="valid names"):
        load_maf("cifar", root=tmp_path)


def test_miniboone_split_and_standardisation():
    raw = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 4))
    tr, va, te = preprocess("miniboone", raw)
    # test = last 100 rows, validation = last 90 of the remaining 900
    assert (tr.shape[0], va.shape[0], te.shape[0]) == (810, 90, 100)
    stats = raw[:900]
    expected_test = (raw[900:] - stats.mean(0)) / stats.std(0)
    np.testing.assert_allclose(te, expected_test, rtol=1e-12)
    both = np.vstack([tr, va])
    np.testing.assert_allclose(both.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(both.std(0), 1.0, rtol=1e-12)


def test_power_drops_two_columns_and_dequantises():
    # 8 raw columns: active power, reactive power, voltage, intensity, 3 sub-meterings,
    # time of day; all constant except the time
    raw = np.zeros((200, 8))
    raw[:, 7] = np.arange(200.0)
    tr, va, te = preprocess("power", raw)
    assert tr.shape[1] == 6
    assert (tr.shape[0], va.shape[0], te.shape[0]) == (162, 18, 20)
    full = np.vstack([tr, va, te])
    # the time gets no noise: after the affine standardisation it stays an equally spaced
    # grid of 200 values
    steps = np.diff(np.sort(full[:, 5]))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)
    # the constant columns only vary through the added uniform noise: a U(a, b) sample
    # standardised has a range of about sqrt(12) = 3.46
    for j in range(5):
        assert 3.0 < np.ptp(full[:, j]) < 3.7
    with pytest.raises(ValueError, match="unknown MAF"):
        preprocess("nope", raw)


def test_gas_removes_correlated_columns():
    rng = np.random.default_rng(1)
    a, b, c = rng.normal(size=(3, 500))
    frame = pd.DataFrame(
        {
            "Time": np.arange(500.0),
            "Meth": rng.normal(size=500),
            "Eth": rng.normal(size=500),
            "s1": a,
            "s2": a + 1e-4 * rng.normal(size=500),  # correlation ~1 with s1
            "s3": b,
            "s4": c,
        }
    )
    tr, va, te = preprocess("gas", frame)
    # s1 is the first column correlated above 0.98 with another one, so it goes
    assert tr.shape[1] == 3
    assert (te.shape[0], va.shape[0]) == (50, 45)
    full = np.vstack([tr, va, te])
    np.testing.assert_allclose(full[:, 1], (b - b.mean()) / b.std(ddof=1), rtol=1e-10)


def test_hepmass_keeps_signal_rows_and_drops_repeated_minimum_features():
    rng = np.random.default_rng(2)
    n = 300
    train = pd.DataFrame(
        {
            "label": np.r_[np.ones(200), np.zeros(100)],
            "f0": rng.normal(size=n),
            "f1": np.r_[np.full(10, -5.0), rng.normal(size=n - 10)],  # min repeated 10 x
            "f2": rng.normal(size=n),
        }
    )
    test = pd.DataFrame(
        {
            "label": np.r_[np.ones(50), np.zeros(20)],
            "f0": rng.normal(size=70),
            "f1": rng.normal(size=70),
            "f2": rng.normal(size=70),
            "extra": np.zeros(70),
        }
    )
    tr, va, te = preprocess("hepmass", (train, test))
    assert (tr.shape, va.shape, te.shape) == ((180, 2), (20, 2), (50, 2))
    signal = train[train.label == 1]
    mean, std = signal.f2.mean(), signal.f2.std()
    np.testing.assert_allclose(te[:, 1], (test.f2[:50] - mean) / std, rtol=1e-12)


def test_partial_miniboone_copy():
    try:
        valid, test = load_miniboone_partial(dtype=torch.float64)
    except FileNotFoundError:
        pytest.skip("offline data not present")
    assert valid.shape == (3284, 43) and test.shape == (3648, 43)
    assert torch.isfinite(valid).all() and torch.isfinite(test).all()
    # standardised with train+validation statistics: the validation split alone is close
    # to, but not exactly, zero mean and unit variance
    assert valid.mean(0).abs().max() < 0.2 and (valid.std(0) - 1).abs().max() < 0.5


def test_gas_pickle_is_read_without_running_code(tmp_path):
    import os
    import pickle

    from bayesfn.data.maf import UnsafePickleError, read_dataframe_pickle

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"Time": np.arange(5.0), "Meth": rng.normal(size=5), "s1": rng.normal(size=5)}
    )
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        frame.to_pickle(tmp_path / "ok.pickle", protocol=protocol)
        pd.testing.assert_frame_equal(read_dataframe_pickle(tmp_path / "ok.pickle"), frame)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "evil.pickle").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UnsafePickleError, match=r"evil\.pickle: refusing to unpickle .*system"):
        read_dataframe_pickle(tmp_path / "evil.pickle")
    assert not (tmp_path / "pwned").exists()

    class EvilPandas:
        def __reduce__(self):
            return (pd.read_csv, (str(tmp_path / "x.csv"),))

    (tmp_path / "evil2.pickle").write_bytes(pickle.dumps(EvilPandas()))
    with pytest.raises(UnsafePickleError, match="read_csv"):
        read_dataframe_pickle(tmp_path / "evil2.pickle")
    (tmp_path / "list.pickle").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match=r"list\.pickle holds a list, not a pandas DataFrame"):
        read_dataframe_pickle(tmp_path / "list.pickle")
