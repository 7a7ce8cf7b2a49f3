"""One registry of unlearning methods, one signature.

``fn(model, data, cfg, *, device, hooks, cache) -> UnlearnResult``: ``model`` is already a
private copy on ``device`` that the method may change in place; ``cfg`` is the method's frozen
config dataclass; ``cache`` is a ``FeatureCache`` or None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch

from ..architectures import SplitModel
from ..cache import FeatureCache
from ..types import Hooks, UnlearnData, UnlearnResult

__all__ = ["Method", "MethodFn", "get_method", "list_methods", "register"]


class MethodFn(Protocol):
    def __call__(
        self,
        model: SplitModel,
        data: UnlearnData,
        cfg: Any,
        *,
        device: torch.device,
        hooks: Hooks,
        cache: FeatureCache | None,
    ) -> UnlearnResult: ...


@dataclass(frozen=True)
class Method:
    name: str
    fn: MethodFn
    config_cls: type

    def make_config(self, config: Any = None) -> Any:
        """The config dataclass from None (defaults), a dict of overrides, or an instance."""
        if config is None:
            return self.config_cls()
        if isinstance(config, self.config_cls):
            return config
        if isinstance(config, dict):
            known = {f.name for f in fields(self.config_cls)}
            unknown = sorted(set(config) - known)
            if unknown:
                raise ValueError(
                    f"{self.name}: unknown config keys {unknown}; known: {sorted(known)}"
                )
            return self.config_cls(**config)
        raise TypeError(f"{self.name}: config must be None, a dict or {self.config_cls.__name__}")


_METHODS: dict[str, Method] = {}


def register(name: str, config_cls: type) -> Callable[[MethodFn], MethodFn]:
    """Decorator: ``@register("lau", LAUConfig) def lau(model, data, cfg, *, ...)``."""

    def deco(fn: MethodFn) -> MethodFn:
        if name in _METHODS and _METHODS[name].fn is not fn:
            raise ValueError(f"method {name!r} is already registered")
        _METHODS[name] = Method(name, fn, config_cls)
        return fn

    return deco


def list_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    try:
        return _METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {list_methods()}") from None
