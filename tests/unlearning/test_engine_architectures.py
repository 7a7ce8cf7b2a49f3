from __future__ import annotations

import pytest
import torch

import unlearning as ul


@pytest.mark.parametrize(
    ("arch", "shape"),
    [("digits-cnn", (1, 8, 8)), ("mnist1d-cnn", (1, 40)), ("resnet18-cifar", (3, 32, 32))],
)
def test_split_composes_to_the_whole_model(arch: str, shape: tuple[int, ...]) -> None:
    model = ul.get_architecture(arch, num_classes=7).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        full = model(x)
        assert full.shape == (2, 7)
        for cut in (1, 2):
            lower, upper = model.split(cut)
            assert torch.allclose(upper(lower(x)), full, atol=1e-5)
    keys = model.state_dict().keys()
    assert all(k.startswith(("features.", "head.")) for k in keys)
    assert model.split(1)[1][0] is model.head


def test_an_in_process_plugin_architecture() -> None:
    from unlearning.architectures import register_architecture

    def tiny(num_classes: int) -> ul.SplitModel:
        feats = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8)))
        return ul.SplitModel(feats, torch.nn.Linear(8, num_classes))

    register_architecture("tiny-test", tiny)
    assert ul.get_architecture("tiny-test", num_classes=3).arch_id == "tiny-test"


def test_entry_point_architectures_are_found_by_name(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import unlearning.architectures as archs

    class FakeEntryPoint:
        name = "ep-arch"

        def load(self):  # type: ignore[no-untyped-def]
            return archs.digits_cnn

    def fake_entry_points(*, group: str):  # type: ignore[no-untyped-def]
        assert group == "lethe.architectures"
        return [FakeEntryPoint()]

    monkeypatch.setattr(archs, "entry_points", fake_entry_points)
    assert "ep-arch" in ul.list_architectures()
    assert ul.get_architecture("ep-arch", num_classes=4).head.out_features == 4
    with pytest.raises(KeyError, match="ep-arch"):
        ul.get_architecture("unlearning.architectures:digits_cnn")
