from __future__ import annotations

import pytest
import torch

import unlearning as ul

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lau_runs_on_cuda(digits_model: ul.SplitModel, class_data: ul.UnlearnData) -> None:
    dev = torch.device("cuda")
    res = ul.unlearn(digits_model, class_data, "lau", device=dev, cache=ul.FeatureCache())
    assert next(res.model.parameters()).device.type == "cuda"
    assert set(res.changed) == {"head.weight", "head.bias"}
    assert ul.evaluate(res.model, class_data, device=dev)["UA"] == 100.0
