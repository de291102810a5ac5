"""Generate the stored neural-tangents reference kernels used by tests/bayesnn.

Run with the separate neural-tangents environment, not bayesfn's:

    python -m venv /tmp/ntenv
    /tmp/ntenv/bin/pip install "jax[cpu]==0.4.23" "jaxlib==0.4.23" "numpy<2" "scipy<1.13"
    /tmp/ntenv/bin/pip install neural-tangents==0.6.5 --no-deps
    /tmp/ntenv/bin/pip install frozendict typing_extensions
    /tmp/ntenv/bin/python benchmarks/nngp_make_reference.py

It writes ``tests/bayesnn/data/nngp_reference.json``: inputs, architecture settings and
the NNGP / NTK matrices that ``stax.serial(...).kernel_fn`` returns in float64.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

# neural_tangents.experimental imports TensorFlow, which we neither need nor install
sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "bayesnn" / "data" / "nngp_reference.json"


def activation_layer(name: str, negative_slope: float):
    return {
        "relu": stax.Relu,
        "erf": stax.Erf,
        "gelu": stax.Gelu,
        "abs": stax.Abs,
        "leaky_relu": lambda: stax.LeakyRelu(negative_slope),
        "ab_relu": lambda: stax.ABRelu(-0.3, 1.7),
    }[name]()


def fc_cases(rng: np.random.Generator) -> list[dict]:
    x1 = rng.normal(size=(6, 3))
    x1[1] = 0.0  # a zero input
    x1[4] = x1[2]  # a duplicated input: an exact zero angle off the diagonal
    x2 = rng.normal(size=(4, 3))
    x2[0] = x1[3]
    cases = []
    settings = [
        ("relu", 1, "ntk", 1.0, 0.0, 1.0, 0.0),
        ("relu", 4, "ntk", 1.5, 0.05, 1.5, 0.05),
        ("relu", 3, "standard", 1.3, 0.2, 0.9, 0.3),
        ("leaky_relu", 2, "ntk", 1.2, 0.1, 0.8, 0.0),
        ("abs", 2, "ntk", 1.1, 0.3, 1.0, 0.2),
        ("ab_relu", 2, "standard", 0.9, 0.4, 1.2, 0.1),
        ("erf", 3, "ntk", 2.0, 0.1, 1.0, 0.0),
        ("erf", 2, "standard", 1.0, 0.5, 1.5, 0.2),
        ("gelu", 3, "ntk", 1.4, 0.2, 1.1, 0.1),
        ("gelu", 2, "standard", 1.0, 0.0, 1.0, 0.0),
    ]
    width = 64
    for act, depth, param, w, b, w_last, b_last in settings:
        layers = []
        for _ in range(depth):
            layers += [stax.Dense(width, w, b, parameterization=param), activation_layer(act, 0.1)]
        layers += [stax.Dense(1, w_last, b_last, parameterization=param)]
        kernel_fn = stax.serial(*layers)[2]
        cross = kernel_fn(x1, x2, ("nngp", "ntk"))
        same = kernel_fn(x1, None, ("nngp", "ntk"))
        cases.append(
            {
                "activation": act,
                "negative_slope": 0.1,
                "slopes": [-0.3, 1.7] if act == "ab_relu" else None,
                "depth": depth,
                "parameterization": param,
                "width": width,
                "w_std": w,
                "b_std": b,
                "w_std_last": w_last,
                "b_std_last": b_last,
                "nngp_cross": np.asarray(cross.nngp).tolist(),
                "ntk_cross": np.asarray(cross.ntk).tolist(),
                "nngp_same": np.asarray(same.nngp).tolist(),
                "ntk_same": np.asarray(same.ntk).tolist(),
            }
        )
    return [{"x1": x1.tolist(), "x2": x2.tolist(), "cases": cases}]


def cnn_cases(rng: np.random.Generator) -> list[dict]:
    """Flatten-readout CNNs: SAME-padded convolutions, diagonal spatial covariance."""
    x1 = rng.normal(size=(3, 5, 4, 2))  # N H W C
    x2 = rng.normal(size=(2, 5, 4, 2))
    cases = []
    for act, depth, param, filt in [
        ("relu", 2, "ntk", 3),
        ("erf", 1, "ntk", 3),
        ("relu", 3, "ntk", 2),
    ]:
        layers = []
        for _ in range(depth):
            layers += [
                stax.Conv(
                    32, (filt, filt), padding="SAME", W_std=1.4, b_std=0.1, parameterization=param
                ),
                activation_layer(act, 0.1),
            ]
        layers += [stax.Flatten(), stax.Dense(1, 1.2, 0.05, parameterization=param)]
        kernel_fn = stax.serial(*layers)[2]
        cross = kernel_fn(x1, x2, ("nngp", "ntk"))
        cases.append(
            {
                "activation": act,
                "depth": depth,
                "parameterization": param,
                "filter_size": filt,
                "w_std": 1.4,
                "b_std": 0.1,
                "w_std_last": 1.2,
                "b_std_last": 0.05,
                "nngp_cross": np.asarray(cross.nngp).tolist(),
                "ntk_cross": np.asarray(cross.ntk).tolist(),
            }
        )
    return [{"x1": x1.tolist(), "x2": x2.tolist(), "cases": cases}]


def main() -> None:
    rng = np.random.default_rng(20220425)
    payload = {
        "generator": f"neural-tangents {nt.__version__}, jax {jax.__version__}, float64",
        "script": "benchmarks/nngp_make_reference.py",
        "fc": fc_cases(rng),
        "cnn": cnn_cases(rng),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
