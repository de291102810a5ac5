"""Real benchmark data and synthetic generators.

Loaders for the offline data in ``shared/data`` (pass ``root=`` or set ``BAYESFN_DATA``
to point elsewhere):

* :func:`load_uci` - the nine UCI regression sets with their published splits;
* :func:`load_debd` - the binary density-estimation benchmark (DEBD);
* :func:`load_mnist` - MNIST from the idx files;
* :func:`load_sklearn` - iris, wine, breast cancer, digits, diabetes, linnerud;
* :func:`load_series` and :func:`load_snelson` - small time series and 1-D toy regression.

Generators:

* :func:`sample_functions` and :func:`split_context_target` - batches of GP and
  non-Gaussian function draws for stochastic-process learners;
* :class:`FunctionSet`, :class:`FunctionSampler`, :class:`TaskSet` and
  :func:`make_tasks` (in ``bayesfn.data.tasks``) - padded function sets, a training
  sampler, and evaluation tasks saved once and reloaded by every method;
* :func:`sample_toy2d`, :func:`toy2d_log_prob` and :func:`sample_rings_nd` - 2-D / n-D
  toy densities.
"""

from ._paths import ENV_VAR, resolve_root
from .context import ContextTargetSplit, split_context_target
from .debd import DEBDData, debd_names, load_debd
from .functions import FunctionBatch, function_families, sample_functions
from .maf import MAFData, load_maf, load_miniboone_partial, maf_names
from .mnist import MNISTData, load_mnist
from .series import SnelsonData, TimeSeries, load_series, load_snelson, series_names
from .sklearn_sets import SklearnData, load_sklearn, sklearn_names
from .tasks import FunctionSampler, FunctionSet, TaskSet, as_function_set, make_tasks
from .toy2d import sample_rings_nd, sample_toy2d, toy2d_log_prob, toy2d_names
from .uci import UCISplit, load_uci, load_uci_rows, uci_names

__all__ = [
    "ENV_VAR",
    "ContextTargetSplit",
    "DEBDData",
    "FunctionBatch",
    "FunctionSampler",
    "FunctionSet",
    "MAFData",
    "MNISTData",
    "SklearnData",
    "SnelsonData",
    "TaskSet",
    "TimeSeries",
    "UCISplit",
    "as_function_set",
    "debd_names",
    "function_families",
    "load_debd",
    "load_maf",
    "load_miniboone_partial",
    "load_mnist",
    "load_series",
    "load_sklearn",
    "load_snelson",
    "load_uci",
    "load_uci_rows",
    "maf_names",
    "make_tasks",
    "resolve_root",
    "sample_functions",
    "sample_rings_nd",
    "sample_toy2d",
    "series_names",
    "sklearn_names",
    "split_context_target",
    "toy2d_log_prob",
    "toy2d_names",
    "uci_names",
]
