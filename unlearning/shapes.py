"""A generated CIFAR-shaped image set with real class structure, deterministic from a seed.

Ten classes of rendered shapes (disc, square, triangle, ring, cross, horizontal bars,
vertical bars, diagonal stripes, diamond, checkerboard) in random colours on a random
background, at a random position and size, with pixel noise: small RGB images (32x32 by
default) that a ResNet-18 can learn but not trivially (sizes, colours and positions
overlap across classes, and noise hides fine detail). Sample ``i`` depends only on
``(seed, i)``, so a set of 200,000 begins with the same images as a set of 5,000.

``write_image_folder`` writes PNGs as an ImageFolder tree (``<class>/<sample_id>.png``) and
``write_webdataset`` the same samples as WebDataset tar shards (``<sample_id>.png`` and
``<sample_id>.cls`` members); both return manifest records (``sample_id, label, split,
subject_ref``) and write them as ``manifest.csv`` next to the data.
"""

from __future__ import annotations

import csv
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CLASSES", "records", "render", "write_image_folder", "write_webdataset"]

CLASSES = (
    "disc",
    "square",
    "triangle",
    "ring",
    "cross",
    "hbars",
    "vbars",
    "diagonal",
    "diamond",
    "checker",
)


def render(index: int, seed: int = 0, size: int = 32, noise: float = 0.08) -> tuple[Any, int]:
    """Sample ``index``: a PIL RGB image and its label."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(len(CLASSES)))
    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 256, 3))
    if sum(abs(a - b) for a, b in zip(bg, fg, strict=True)) < 150:  # keep the shape visible
        fg = tuple(255 - v for v in bg)
    scale = 4  # draw large, then downsample: antialiased edges
    s = size * scale
    image = Image.new("RGB", (s, s), bg)
    draw = ImageDraw.Draw(image)
    r = rng.uniform(0.22, 0.42) * s
    cx, cy = (rng.uniform(r, s - r) for _ in range(2))
    box = (cx - r, cy - r, cx + r, cy + r)
    w = max(2, int(r * 0.3))
    name = CLASSES[label]
    if name == "disc":
        draw.ellipse(box, fill=fg)
    elif name == "square":
        draw.rectangle(box, fill=fg)
    elif name == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif name == "ring":
        draw.ellipse(box, outline=fg, width=w)
    elif name == "cross":
        draw.rectangle((cx - w / 2, cy - r, cx + w / 2, cy + r), fill=fg)
        draw.rectangle((cx - r, cy - w / 2, cx + r, cy + w / 2), fill=fg)
    elif name == "hbars":
        for k in range(3):
            y0 = cy - r + k * (2 * r) / 2.5
            draw.rectangle((cx - r, y0, cx + r, y0 + w), fill=fg)
    elif name == "vbars":
        for k in range(3):
            x0 = cx - r + k * (2 * r) / 2.5
            draw.rectangle((x0, cy - r, x0 + w, cy + r), fill=fg)
    elif name == "diagonal":
        for k in range(-2, 3):
            off = k * r * 0.8
            draw.line((cx - r + off, cy + r, cx + r + off, cy - r), fill=fg, width=w)
    elif name == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fg)
    else:  # checker
        cell = r / 2
        for i in range(4):
            for j in range(4):
                if (i + j) % 2 == 0:
                    x0, y0 = cx - r + i * cell, cy - r + j * cell
                    draw.rectangle((x0, y0, x0 + cell, y0 + cell), fill=fg)
    small = np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float64)
    small = small + rng.normal(0.0, noise * 255.0, small.shape)
    return Image.fromarray(np.clip(small, 0, 255).astype(np.uint8), "RGB"), label


def records(
    n_train: int, n_val: int, n_test: int, *, subject_size: int = 5
) -> Iterator[dict[str, Any]]:
    """Manifest rows without labels rendered yet: index, sample_id, split, subject_ref."""
    for i in range(n_train + n_val + n_test):
        split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
        subject = f"subject-{i // max(subject_size, 1):06d}" if split == "train" else ""
        yield {"index": i, "sample_id": f"shape-{i:07d}", "split": split, "subject_ref": subject}


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def _write_manifest(root: Path, rows: list[dict[str, Any]]) -> Path:
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, ["sample_id", "label", "split", "subject_ref", "uri"])
        out.writeheader()
        for row in rows:
            out.writerow({k: row.get(k, "") for k in out.fieldnames})
    return path


def write_image_folder(
    root: str | os.PathLike[str],
    n_train: int,
    n_val: int,
    n_test: int,
    *,
    seed: int = 0,
    size: int = 32,
    with_uri: bool = False,
) -> list[dict[str, Any]]:
    """Render the set into ``root/<class>/<sample_id>.png``; manifest rows (also written to
    ``root/manifest.csv``; ``uri`` filled when ``with_uri``)."""
    base = Path(root)
    for name in CLASSES:
        (base / name).mkdir(parents=True, exist_ok=True)
    rows = []
    for rec in records(n_train, n_val, n_test):
        image, label = render(rec["index"], seed, size)
        rel = f"{CLASSES[label]}/{rec['sample_id']}.png"
        (base / rel).write_bytes(_png(image))
        rows.append({**rec, "label": label, "uri": rel if with_uri else ""})
    _write_manifest(base, rows)
    return rows


def write_webdataset(
    root: str | os.PathLike[str],
    n_train: int,
    n_val: int,
    n_test: int,
    *,
    seed: int = 0,
    size: int = 32,
    shard_size: int = 1000,
) -> list[dict[str, Any]]:
    """The same samples as WebDataset shards ``root/shard-000000.tar`` ..."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    every = list(records(n_train, n_val, n_test))
    for lo in range(0, len(every), shard_size):
        with tarfile.open(base / f"shard-{lo // shard_size:06d}.tar", "w") as tar:
            for rec in every[lo : lo + shard_size]:
                image, label = render(rec["index"], seed, size)
                for ext, data in (("png", _png(image)), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"{rec['sample_id']}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                rows.append({**rec, "label": label, "uri": ""})
    _write_manifest(base, rows)
    return rows
