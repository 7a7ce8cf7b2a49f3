"""How an image becomes the model's input: declared with the model, the same for every split.

``Preprocess`` is a small, explicit recipe (channels, resize, center crop, mean/std) that is
recorded in every version's manifest (``to_dict``) and rebuilt from it (``from_dict``). A
torchvision weights preset (``"ResNet18_Weights.IMAGENET1K_V1"``) is accepted as a shorthand
and written out into that recipe: its transforms are read from torchvision's own metadata
(nothing is downloaded), so the manifest says exactly what was applied even if a later
torchvision changes the preset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["Preprocess"]

_CHANNELS = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class Preprocess:
    channels: int = 3
    """1 (grayscale) or 3 (RGB): every image is converted to this before anything else."""
    resize: int | None = None
    """Shorter side resized to this many pixels (bilinear, antialiased); None keeps the size."""
    center_crop: int | None = None
    """Square center crop of this size after resizing; None keeps the whole image."""
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    """Per-channel mean subtracted after scaling pixels to [0, 1]."""
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    """Per-channel standard deviation divided by after subtracting the mean."""
    preset: str | None = None
    """The torchvision weights preset this recipe was written out from, if any (a record)."""

    def __post_init__(self) -> None:
        if self.channels not in _CHANNELS:
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean and std need {self.channels} values each")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        for name in ("resize", "center_crop"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 4096:
                raise ValueError(f"{name} must be 1..4096 pixels, got {value}")

    @classmethod
    def from_preset(cls, name: str) -> Preprocess:
        """The eval transforms of a torchvision weights preset, written out."""
        from torchvision.models import get_weight

        try:
            weights = get_weight(name)
        except (ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"unknown torchvision weights preset {name!r}") from exc
        t = weights.transforms()
        crop = [int(v) for v in getattr(t, "crop_size", [])]
        size = [int(v) for v in getattr(t, "resize_size", [])]
        mean = tuple(float(v) for v in getattr(t, "mean", ()))
        std = tuple(float(v) for v in getattr(t, "std", ()))
        if not (crop and size and mean and std):
            raise ValueError(f"{name!r} is not an image-classification preset")
        return cls(3, size[0], crop[0], mean, std, preset=name)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Preprocess:
        """From a manifest entry: either the written-out fields, or ``{"preset": name}``."""
        known = {"channels", "resize", "center_crop", "mean", "std", "preset"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing fields {unknown}; known: {sorted(known)}")
        if set(raw) == {"preset"}:
            return cls.from_preset(str(raw["preset"]))
        fields = dict(raw)
        channels = int(fields.get("channels", 3))
        fields["channels"] = channels
        fields["mean"] = tuple(float(v) for v in fields.get("mean", (0.0,) * channels))
        fields["std"] = tuple(float(v) for v in fields.get("std", (1.0,) * channels))
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    def transform(self) -> Callable[[Any], torch.Tensor]:
        """PIL image -> float tensor (C, H, W), via torchvision.transforms.v2."""
        from torchvision.transforms import v2

        steps: list[Callable[..., Any]] = [_Convert(_CHANNELS[self.channels]), v2.PILToTensor()]
        if self.resize is not None:
            steps.append(v2.Resize(self.resize, antialias=True))
        if self.center_crop is not None:
            steps.append(v2.CenterCrop(self.center_crop))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        compose: Callable[[Any], torch.Tensor] = v2.Compose(steps)  # torchvision is untyped
        return compose


class _Convert:
    """``image.convert(mode)`` as a picklable step (DataLoader workers receive it)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, image: Any) -> Any:
        return image if image.mode == self.mode else image.convert(self.mode)
