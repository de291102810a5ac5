"""bayesfn: function-space Bayesian deep learning and tractable densities on PyTorch.

Every model follows one contract: ``Model(**settings).fit(data) -> model`` and
``model.posterior(x) -> Posterior``. See ``DESIGN.md`` for the architecture.
"""

from bayesfn.model import Model, NotFittedError
from bayesfn.posterior import (
    CategoricalPosterior,
    GaussianPosterior,
    MixturePosterior,
    Posterior,
    SamplePosterior,
    StudentTPosterior,
)
from bayesfn.training import FitResult, optimize

__version__ = "0.1.0.dev0"

__all__ = [
    "CategoricalPosterior",
    "FitResult",
    "GaussianPosterior",
    "MixturePosterior",
    "Model",
    "NotFittedError",
    "Posterior",
    "SamplePosterior",
    "StudentTPosterior",
    "__version__",
    "optimize",
]
