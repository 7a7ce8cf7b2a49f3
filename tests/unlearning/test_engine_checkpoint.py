from __future__ import annotations

import pytest
import torch

import unlearning as ul
from unlearning.checkpoint import StateDictMismatch, read_metadata


def test_round_trip_gives_the_same_model(digits: ul.Dataset, digits_model: ul.SplitModel):
    blob = ul.save_checkpoint(digits_model, "digits-cnn", {"method": "lau", "metrics": {"UA": 1}})
    assert read_metadata(blob)["arch_id"] == "digits-cnn"
    assert read_metadata(blob)["method"] == "lau"
    back = ul.load_checkpoint(blob, arch_id="digits-cnn", num_classes=10)
    with torch.no_grad():
        assert torch.equal(back(digits.test.x), digits_model.eval()(digits.test.x))


def test_mismatches_are_refused(digits_model: ul.SplitModel) -> None:
    blob = ul.save_checkpoint(digits_model, "digits-cnn")
    with pytest.raises(ValueError, match="architecture"):
        ul.load_checkpoint(blob, arch_id="mnist1d-cnn", num_classes=10)
    with pytest.raises(ValueError, match=r"head\.weight"):
        ul.load_checkpoint(blob, arch_id="digits-cnn", num_classes=7)
    with pytest.raises(ValueError):
        ul.load_checkpoint(b"\x00" * 4 + b"not safetensors", arch_id="digits-cnn", num_classes=10)
    foreign = ul.save_checkpoint(ul.get_architecture("mnist1d-cnn"), "digits-cnn")
    with pytest.raises(StateDictMismatch, match="unexpected tensors") as info:
        ul.load_checkpoint(foreign, arch_id="digits-cnn", num_classes=10)
    assert "features.3.1.weight" in info.value.unexpected
    assert any(m.startswith("features.0.1.weight: (32, 1, 5)") for m in info.value.mismatched)
