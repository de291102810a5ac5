"""The model contract (DESIGN §4): ``fit`` → self, ``posterior``, ``save`` / ``load``.

``__init__`` stores settings only, under attributes of the same names, so that
:meth:`Model.get_config` can read them back and :meth:`Model.load` can rebuild the
model from JSON. Fitted state lives in attributes ending in ``_``.
"""

from __future__ import annotations

import abc
import inspect
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from bayesfn import io
from bayesfn.posterior import Posterior

__all__ = [
    "Component",
    "Model",
    "NotFittedError",
    "as_tensor",
    "check_inputs",
    "check_labels",
    "check_targets",
    "component_from",
    "resolve_device",
    "resolve_dtype",
]

_FORMAT = "bayesfn-model"
_FORMAT_VERSION = 1
_REGISTRY: dict[str, type[Model]] = {}
# classes whose module moved: saved files name the old path
_MOVED = {
    "bayesfn.bayesnn.scale_mixture.ScaleMixtureNNGP": (
        "bayesfn.bayesnn.nngp.scale_mixture.ScaleMixtureNNGP"
    ),
    "bayesfn.bayesnn.classification.OneHotNNGPClassifier": (
        "bayesfn.bayesnn.nngp.classification.OneHotNNGPClassifier"
    ),
    "bayesfn.bayesnn.classification.SVTPClassifier": (
        "bayesfn.bayesnn.nngp.classification.SVTPClassifier"
    ),
}

M = TypeVar("M", bound="Model")


class NotFittedError(ValueError, AttributeError):
    """Raised when a model that has not been fitted is asked for a posterior or saved."""


def resolve_dtype(dtype: torch.dtype | str | None, default: torch.dtype) -> torch.dtype:
    """Accept ``torch.float64``, ``"float64"`` or ``None`` (→ ``default``)."""
    if dtype is None:
        return default
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype name such as 'float64'")
        dtype = resolved
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype; got {dtype!r}")
    return dtype


def resolve_device(device: torch.device | str | None) -> torch.device:
    """Accept a device, its name, or ``None`` (→ CPU)."""
    if device is None:
        return torch.device("cpu")
    if not isinstance(device, torch.device | str | int) or isinstance(device, bool):
        raise TypeError(
            f"device must be a torch.device, a name such as 'cpu' or 'cuda:0', or None; "
            f"got {type(device).__name__}"
        )
    try:
        return torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"device {device!r} is not a torch device name such as 'cpu' or 'cuda:0' ({err})"
        ) from None


def as_tensor(
    x: Any, name: str, *, dtype: torch.dtype, device: torch.device | None = None
) -> torch.Tensor:
    """Convert a tensor, numpy array or nested list to a tensor, naming ``name`` on failure."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray | list | tuple):
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} could not be converted to a tensor: {err}") from None
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy array; got {type(x).__name__}")
    if not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise TypeError(f"{name} must hold numbers; got dtype {t.dtype}")
    return t.to(dtype=dtype, device=device)


def _check_finite_nonempty(t: torch.Tensor, name: str) -> None:
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).sum().item()
        raise ValueError(f"{name} contains {bad} NaN or inf value(s)")


def check_inputs(
    x: Any,
    name: str = "x",
    *,
    dtype: torch.dtype,
    device: torch.device | None = None,
    num_features: int | None = None,
    allow_batch: bool = False,
) -> torch.Tensor:
    """Validate model inputs: ``(n, d)``, or ``(b, n, d)`` when ``allow_batch``.

    Raises ``ValueError`` naming ``name``, the expected shape and the given one for a
    wrong rank, a wrong feature count, NaN / inf or empty input.
    """
    t = as_tensor(x, name, dtype=dtype, device=device)
    ranks = (2, 3) if allow_batch else (2,)
    expected = "(n, d) or (b, n, d)" if allow_batch else "(n, d)"
    if t.ndim not in ranks:
        raise ValueError(f"{name} must have shape {expected}; got {tuple(t.shape)}")
    _check_finite_nonempty(t, name)
    if num_features is not None and t.shape[-1] != num_features:
        raise ValueError(
            f"{name} must have {num_features} feature(s) in its last dimension, as in the "
            f"data the model was fitted on; got shape {tuple(t.shape)}"
        )
    return t


def check_targets(
    y: Any,
    num_points: int,
    name: str = "y",
    *,
    dtype: torch.dtype,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Validate regression targets and return them as ``(n, m)``.

    ``y`` may be ``(n,)`` (one output) or ``(n, m)``; ``n`` must equal ``num_points``.
    """
    t = as_tensor(y, name, dtype=dtype, device=device)
    if t.ndim == 1:
        t = t.unsqueeze(-1)
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (n,) or (n, m); got {tuple(t.shape)}")
    if t.shape[0] != num_points:
        raise ValueError(f"{name} has {t.shape[0]} rows but x has {num_points}; they must match")
    _check_finite_nonempty(t, name)
    return t


def check_labels(
    labels: Any, num_points: int, num_classes: int | None, name: str = "labels"
) -> tuple[torch.Tensor, int]:
    """Validate integer class labels ``(n,)``; return them as int64 and the class count.

    ``num_classes=None`` infers ``max(labels) + 1`` (at least 2).
    """
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"{name} must hold integer class indices; got dtype {labels.dtype}")
        labels = torch.as_tensor(labels)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or numpy array; got {type(labels).__name__}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices; got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"{name} must have shape (n,); got {tuple(labels.shape)}")
    if labels.shape[0] != num_points:
        raise ValueError(
            f"{name} has {labels.shape[0]} entries but x has {num_points} rows; they must match"
        )
    labels = labels.to(torch.int64)
    if num_classes is None:
        num_classes = max(2, int(labels.max()) + 1)
    if (labels < 0).any() or (labels >= num_classes).any():
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) (num_classes={num_classes}); got values "
            f"from {int(labels.min())} to {int(labels.max())}"
        )
    return labels, num_classes


def _init_settings(obj: Any) -> dict[str, Any]:
    """``obj``'s ``__init__`` arguments, read back from attributes of the same names."""
    config = {}
    for name, param in inspect.signature(type(obj).__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if not hasattr(obj, name):
            raise AttributeError(
                f"{type(obj).__name__}.__init__ must store argument {name!r} as "
                f"self.{name} so that get_config() can read it"
            )
        config[name] = _jsonable(getattr(obj, name), name)
    return config


class Component:
    """A settings object that a model takes as a setting: a network architecture, a
    prior, a likelihood, an inference algorithm.

    Like a model, its ``__init__`` stores its arguments under the same names; it is
    saved inside the model's JSON config as ``{"component": "<module.Class>",
    "config": {...}}`` and rebuilt from that by :func:`component_from`. Tensors it
    learns (a fitted prior's scales) are the owning model's state, not its config.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _COMPONENTS[f"{cls.__module__}.{cls.__qualname__}"] = cls

    def get_config(self) -> dict[str, Any]:
        """The ``__init__`` settings as a JSON-serialisable dict."""
        return _init_settings(self)

    def to_json(self) -> dict[str, Any]:
        """``{"component": "<module.Class>", "config": get_config()}``."""
        return {
            "component": f"{type(self).__module__}.{type(self).__qualname__}",
            "config": self.get_config(),
        }

    def __repr__(self) -> str:
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except AttributeError:
            args = "..."
        return f"{type(self).__name__}({args})"


_COMPONENTS: dict[str, type[Component]] = {}

C = TypeVar("C", bound=Component)


def component_from(value: Any, base: type[C], name: str) -> C:
    """Accept a ``base`` instance or its JSON form (:meth:`Component.to_json`).

    Raises ``TypeError`` naming ``name`` for anything else, and ``ValueError`` for JSON
    naming an unknown class or one that is not a ``base``.
    """
    if isinstance(value, base):
        return value
    if isinstance(value, dict) and set(value) == {"component", "config"}:
        qualname = value["component"]
        if qualname not in _COMPONENTS and str(qualname).split(".")[0] == "bayesfn":
            __import__(str(qualname).rsplit(".", 1)[0])
        klass = _COMPONENTS.get(qualname)
        if klass is None:
            raise ValueError(f"{name} names {qualname!r}, which is not a known bayesfn component")
        if not issubclass(klass, base):
            raise TypeError(f"{name} must be a {base.__name__}; {qualname} is not one")
        return klass(**value["config"])
    raise TypeError(f"{name} must be a {base.__name__}; got {type(value).__name__}")


class Model(abc.ABC):
    """Base of every bayesfn model.

    Subclasses implement :meth:`fit`, :meth:`posterior`, :meth:`_get_state` and
    :meth:`_set_state`, and keep every ``__init__`` argument as an attribute of the
    same name. ``fit`` must set ``fit_result_`` (a :class:`~bayesfn.training.FitResult`
    or a dict).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[f"{cls.__module__}.{cls.__qualname__}"] = cls

    # ------------------------------------------------------------ contract
    @abc.abstractmethod
    def fit(self: M, data: Any, *args: Any, **options: Any) -> M:
        """Fit to ``data`` and return ``self``."""

    @abc.abstractmethod
    def posterior(self, x: Any, **kwargs: Any) -> Posterior:
        """The posterior (predictive) at inputs ``x``."""

    @abc.abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """Fitted state: a nested dict of tensors and JSON-able values."""

    @abc.abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned (the model is freshly built)."""

    # ------------------------------------------------------------- helpers
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "fit_result_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit() before posterior() "
                "or save()"
            )

    def get_config(self) -> dict[str, Any]:
        """The ``__init__`` settings as a JSON-serialisable dict."""
        return _init_settings(self)

    def save(self, path: str | os.PathLike) -> None:
        """Save settings (``config.json``) and fitted state (``weights.safetensors``)
        into the folder ``path``."""
        self._check_fitted()
        result = self.fit_result_
        result = result.to_dict() if hasattr(result, "to_dict") else result
        header = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "config": self.get_config(),
            "fit_result": result,
        }
        io.write_state(path, header, self._get_state())

    @classmethod
    def load(cls: type[M], path: str | os.PathLike) -> M:
        """Rebuild a saved model. Reads JSON and safetensors only; never unpickles."""
        header, state = io.read_state(path)
        if header.get("format") != _FORMAT:
            raise ValueError(f"{path} does not hold a saved bayesfn model")
        if header.get("format_version", 0) > _FORMAT_VERSION:
            raise ValueError(
                f"{path} was saved by a newer bayesfn (format {header['format_version']})"
            )
        if not isinstance(header.get("class"), str):
            raise ValueError(f"{path}: {io.CONFIG_FILE} does not name the saved model's class")
        name = _MOVED.get(header["class"], header["class"])
        if name not in _REGISTRY:
            # importing the defining module registers the class; only bayesfn's own modules
            module = name.rsplit(".", 1)[0]
            if module.split(".")[0] == "bayesfn":
                __import__(module)
        klass = _REGISTRY.get(name)
        if klass is None:
            raise ValueError(f"{path} holds a {name}, which is not a known bayesfn model")
        if not issubclass(klass, cls):
            raise TypeError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        config_file = os.path.join(str(path), io.CONFIG_FILE)
        weights_file = os.path.join(str(path), io.WEIGHTS_FILE)
        config = header.get("config")
        if not isinstance(config, dict):
            raise ValueError(f"{config_file} holds no 'config' dict of settings")
        try:
            model = klass(**config)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{config_file}: the saved settings do not build a {klass.__name__} ({err})"
            ) from err
        try:
            model._set_state(state)
        except (KeyError, IndexError, RuntimeError, TypeError, ValueError) as err:
            what = f"missing entry {err}" if isinstance(err, KeyError) else str(err)
            raise ValueError(
                f"{weights_file}: the saved state does not fit a {klass.__name__} with the "
                f"settings in {config_file} ({what}); the folder was changed or is corrupt"
            ) from err
        model.fit_result_ = _fit_result_from(header.get("fit_result"))
        return model

    def __repr__(self) -> str:
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except AttributeError:
            args = "..."
        return f"{type(self).__name__}({args})"


def _fit_result_from(data: Any) -> Any:
    from bayesfn.training import FitResult

    if isinstance(data, dict) and set(data) <= set(FitResult.__dataclass_fields__):
        return FitResult(**data)
    return data


def _jsonable(value: Any, name: str) -> Any:
    if isinstance(value, Component):
        return value.to_json()
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{name}.{k}") for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_jsonable(v, name) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(
        f"setting {name!r} of type {type(value).__name__} cannot be saved as JSON; "
        "settings must be numbers, strings, lists or dicts of them"
    )
