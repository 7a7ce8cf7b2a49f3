"""Classifier architectures by id, each split into a feature extractor and a last linear layer.

Built-in ids: ``digits-cnn`` (1x8x8), ``mnist1d-cnn`` (1x40), ``resnet18-cifar`` (3x32x32).
``torchvision:<builder>`` is any classification builder of ``torchvision.models`` (built with
``weights=None`` and ``num_classes``: no weights are ever fetched; the user loads theirs), cut
on its own module tree by ``unlearning.traced`` with the user's tensor names unchanged.
User architectures plug in through the entry-point group ``lethe.architectures``: the entry
point's name is the id and its object a callable ``factory(num_classes) -> SplitModel``.
Ids are looked up among registered names only (torchvision's own model registry for the
``torchvision:`` prefix); nothing is imported from a string in the input.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

import torch
from torch import nn

__all__ = [
    "ENTRY_POINT_GROUP",
    "PUBLISHED_TORCHVISION",
    "TORCHVISION_PREFIX",
    "SplitModel",
    "get_architecture",
    "list_architectures",
    "published_architectures",
    "register_architecture",
    "torchvision_builders",
]

ENTRY_POINT_GROUP = "lethe.architectures"
TORCHVISION_PREFIX = "torchvision:"

Factory = Callable[[int], "SplitModel"]


class SplitModel(nn.Module):
    """``head(features(x))``: ``features`` is a Sequential of blocks, ``head`` the last Linear.

    State-dict keys are ``features.<i>.*`` and ``head.*``.
    """

    def __init__(self, features: nn.Sequential, head: nn.Linear, *, arch_id: str = "") -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.arch_id = arch_id

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x))
        return logits

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def split(self, cut: int = 1) -> tuple[nn.Module, nn.Module]:
        """``(lower, upper)`` sharing this model's modules; ``upper`` holds the last ``cut`` layers.

        ``cut=1`` gives the head alone; ``cut=2`` the last feature block and the head, and so on.
        """
        n = len(self.features)
        if not 1 <= cut <= n + 1:
            raise ValueError(f"cut must be in 1..{n + 1}, got {cut}")
        at = n - (cut - 1)
        lower = nn.Sequential(*list(self.features)[:at])
        upper = nn.Sequential(*list(self.features)[at:], self.head)
        return lower, upper

    def upper_prefixes(self, cut: int = 1) -> tuple[str, ...]:
        """State-dict key prefixes of the layers above the cut."""
        n = len(self.features)
        return (*(f"features.{i}." for i in range(n - (cut - 1), n)), "head.")


class _Channels(nn.Module):
    """Accept ``(N, L)`` as well as ``(N, 1, L)`` (or ``(N, H*W)`` for a known image shape)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


def _conv2d(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def digits_cnn(num_classes: int = 10) -> SplitModel:
    features = nn.Sequential(
        nn.Sequential(_Channels((1, 8, 8)), *_conv2d(1, 32)),
        nn.Sequential(*_conv2d(32, 64), nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU()),
    )
    return SplitModel(features, nn.Linear(128, num_classes), arch_id="digits-cnn")


def _conv1d(cin: int, cout: int, k: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm1d(cout),
        nn.ReLU(),
    ]


def mnist1d_cnn(num_classes: int = 10) -> SplitModel:
    features = nn.Sequential(
        nn.Sequential(_Channels((1, 40)), *_conv1d(1, 32, 5, 1)),
        nn.Sequential(*_conv1d(32, 64, 3, 2)),
        nn.Sequential(*_conv1d(64, 64, 3, 2)),
        nn.Sequential(nn.Flatten(), nn.Linear(64 * 10, 128), nn.ReLU()),
    )
    return SplitModel(features, nn.Linear(128, num_classes), arch_id="mnist1d-cnn")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def resnet18_cifar(num_classes: int = 10) -> SplitModel:
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool)."""

    def layer(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))

    features = nn.Sequential(
        nn.Sequential(_Channels((3, 32, 32)), *_conv2d(3, 64)),
        layer(64, 64, 1),
        layer(64, 128, 2),
        layer(128, 256, 2),
        layer(256, 512, 2),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    )
    return SplitModel(features, nn.Linear(512, num_classes), arch_id="resnet18-cifar")


_BUILTIN: dict[str, Factory] = {
    "digits-cnn": digits_cnn,
    "mnist1d-cnn": mnist1d_cnn,
    "resnet18-cifar": resnet18_cifar,
}
_REGISTERED: dict[str, Factory] = {}


def register_architecture(arch_id: str, factory: Factory) -> None:
    """Register an architecture in-process (entry points are the way for installed packages)."""
    if arch_id in _BUILTIN:
        raise ValueError(f"{arch_id!r} is a built-in architecture")
    _REGISTERED[arch_id] = factory


def _plugins() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list_architectures() -> list[str]:
    """Built-in, registered and plug-in ids (``torchvision:<builder>`` ids are accepted too:
    ``torchvision_builders()`` lists them)."""
    return sorted({*_BUILTIN, *_REGISTERED, *_plugins()})


#: ``torchvision:`` ids whose tensor spec the workers publish by default, so the torch-free
#: API can check an uploaded checkpoint against them (any other builder is accepted by the
#: engine; the service needs its spec published: ``lethe publish-specs`` with its id).
PUBLISHED_TORCHVISION = (
    "torchvision:resnet18",
    "torchvision:resnet34",
    "torchvision:resnet50",
    "torchvision:mobilenet_v3_small",
    "torchvision:mobilenet_v3_large",
    "torchvision:efficientnet_b0",
)


def published_architectures() -> list[str]:
    """``list_architectures()`` plus ``PUBLISHED_TORCHVISION``."""
    return sorted({*list_architectures(), *PUBLISHED_TORCHVISION})


def torchvision_builders() -> list[str]:
    """``torchvision:<builder>`` for every classification builder of ``torchvision.models``."""
    from torchvision import models

    return [TORCHVISION_PREFIX + name for name in models.list_models(module=models)]


def _torchvision(arch_id: str, num_classes: int, head_module: str | None) -> SplitModel:
    from torchvision import models

    from .traced import as_split_model

    name = arch_id.removeprefix(TORCHVISION_PREFIX)
    if name not in models.list_models(module=models):
        raise KeyError(
            f"unknown architecture {arch_id!r}: {name!r} is not a classification builder of "
            f"torchvision.models ({len(models.list_models(module=models))} are, e.g. resnet18)"
        )
    net = models.get_model(name, weights=None, num_classes=num_classes)
    return as_split_model(net, head_module=head_module, arch_id=arch_id, num_classes=num_classes)


def get_architecture(
    arch_id: str, *, num_classes: int = 10, head_module: str | None = None
) -> SplitModel:
    """A freshly initialised model; ``KeyError`` listing the known ids if ``arch_id`` is unknown.

    ``head_module`` names the logits layer of a ``torchvision:`` model where finding it
    automatically is not wanted (``"classifier.3"``).
    """
    if arch_id.startswith(TORCHVISION_PREFIX):
        return _torchvision(arch_id, num_classes, head_module)
    factory = _BUILTIN.get(arch_id) or _REGISTERED.get(arch_id)
    if factory is None:
        ep = _plugins().get(arch_id)
        if ep is None:
            raise KeyError(f"unknown architecture {arch_id!r}; known: {list_architectures()}")
        factory = ep.load()  # type: ignore[attr-defined]
    model = factory(num_classes)
    if not isinstance(model, SplitModel):
        raise TypeError(f"architecture {arch_id!r} did not build a SplitModel")
    model.arch_id = arch_id
    return model
