"""torchvision classifiers by reference: found head, cuts on the real module tree, the user's
tensor names in every checkpoint, state dicts in and pickles refused."""

from __future__ import annotations

import io

import pytest
import torch
import torchvision
from safetensors.torch import load as st_load

import unlearning as ul
from unlearning.checkpoint import NotAStateDict, StateDictMismatch, read_state_dict

X = torch.randn(3, 3, 32, 32)


@pytest.fixture(scope="module")
def resnet() -> ul.SplitModel:
    torch.manual_seed(0)
    return ul.get_architecture("torchvision:resnet18", num_classes=5).eval()


def test_resnet18_splits_at_each_cut_into_parts_that_compose(resnet: ul.SplitModel) -> None:
    assert resnet.head is resnet.fc  # type: ignore[attr-defined]
    with torch.no_grad():
        full = resnet(X)
        for cut in (1, 2, 3):
            lower, upper = resnet.split(cut)
            assert torch.allclose(upper(lower(X)), full, atol=1e-5)
    assert resnet.upper_prefixes(1) == ("fc.",)
    above_2 = resnet.upper_prefixes(2)
    assert "layer4.1.conv1." in above_2 and not any(p.startswith("layer4.0") for p in above_2)
    with pytest.raises(ValueError, match="cut must be"):
        resnet.split(99)


def test_the_upper_part_trains_the_model_itself(resnet: ul.SplitModel) -> None:
    _, upper = resnet.split(2)
    keys = set(upper.state_dict())
    assert "layer4.1.conv1.weight" in keys and "fc.weight" in keys
    assert keys <= set(resnet.state_dict())
    before = resnet.fc.weight.detach().clone()  # type: ignore[attr-defined]
    with torch.no_grad():
        upper.get_parameter("fc.weight").add_(1.0)
    assert torch.equal(resnet.fc.weight, before + 1.0)  # type: ignore[attr-defined]
    with torch.no_grad():
        upper.get_parameter("fc.weight").sub_(1.0)


@pytest.mark.parametrize(
    ("builder", "head", "size"),
    [
        ("mobilenet_v3_small", "classifier.3", 64),
        ("efficientnet_b0", "classifier.1", 64),
        ("convnext_tiny", "classifier.2", 64),
    ],
)
def test_the_head_of_other_families_is_found(builder: str, head: str, size: int) -> None:
    model = ul.get_architecture(f"torchvision:{builder}", num_classes=4).eval()
    assert model.head_path == head  # type: ignore[attr-defined]
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        lower, upper = model.split(2)
        assert torch.allclose(upper(lower(x)), model(x), atol=1e-4)


def test_vit_head_and_a_named_head_module() -> None:
    model = ul.get_architecture("torchvision:vit_b_16", num_classes=3)
    assert model.head_path == "heads.head"  # type: ignore[attr-defined]
    named = ul.get_architecture(
        "torchvision:mobilenet_v3_small", num_classes=3, head_module="classifier.3"
    )
    assert named.head.out_features == 3
    with pytest.raises(ValueError, match=r"not an nn\.Linear"):
        ul.get_architecture(
            "torchvision:mobilenet_v3_small", num_classes=3, head_module="classifier.1"
        )
    with pytest.raises(KeyError, match="not a classification builder"):
        ul.get_architecture("torchvision:fasterrcnn_resnet50_fpn", num_classes=3)


def test_every_version_loads_into_unmodified_torchvision_strictly(resnet: ul.SplitModel) -> None:
    x = torch.randn(50, 3, 32, 32)
    with torch.no_grad():  # labels the model already predicts: there is something to forget
        y = resnet(x).argmax(1)
    ids = tuple(f"s{i}" for i in range(50))
    train, held = ul.Split(x[:40], y[:40], ids[:40]), ul.Split(x[40:], y[40:], ids[40:])
    ds = ul.Dataset("t", 5, (3, 32, 32), train, held, held)
    top = int(y[:40].mode().values)
    data = ds.unlearn_data([i for i, c in zip(ids[:40], y[:40].tolist(), strict=True) if c == top])
    result = ul.unlearn(resnet, data, "lau", {"epochs": 3})
    assert result.changed and all(k.startswith("fc.") for k in result.changed)
    assert not result.backbone_changed
    blob = ul.save_checkpoint(result.model, "torchvision:resnet18", {"method": "lau"})
    plain = torchvision.models.resnet18(num_classes=5)
    plain.load_state_dict(st_load(blob), strict=True)
    stored, expected = st_load(blob), plain.state_dict()
    assert {k: (v.shape, v.dtype) for k, v in stored.items()} == {
        k: (v.shape, v.dtype) for k, v in expected.items()
    }
    with torch.no_grad():
        assert torch.allclose(plain.eval()(X), result.model.eval()(X), atol=1e-6)


def test_head_only_version_adds_kilobytes_to_the_store(resnet: ul.SplitModel, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from models_store import open_store

    store = open_store(str(tmp_path / "store"))
    v1 = store.put_checkpoint(ul.save_checkpoint(resnet, "torchvision:resnet18"))
    changed = ul.load_checkpoint(
        ul.save_checkpoint(resnet, "torchvision:resnet18"), "torchvision:resnet18", 5
    )
    with torch.no_grad():
        changed.head.weight.mul_(0.5)
    v2 = store.put_checkpoint(ul.save_checkpoint(changed, "torchvision:resnet18", {"v": 2}))
    assert v1.total_bytes > 40_000_000
    assert v2.new_bytes == changed.head.weight.numel() * 4  # only fc.weight is new
    downloaded = store.read_checkpoint(v2.manifest)
    torchvision.models.resnet18(num_classes=5).load_state_dict(st_load(downloaded), strict=True)


def test_pt_state_dicts_are_read_and_pickled_modules_refused(resnet: ul.SplitModel) -> None:
    buf = io.BytesIO()
    torch.save(resnet.state_dict(), buf)
    model = ul.load_checkpoint(buf.getvalue(), "torchvision:resnet18", 5)
    assert torch.equal(model.state_dict()["fc.weight"], resnet.state_dict()["fc.weight"])
    wrapped = io.BytesIO()
    torch.save({"state_dict": resnet.state_dict(), "epoch": 3}, wrapped)
    assert set(read_state_dict(wrapped.getvalue())) == set(resnet.state_dict())
    pickled = io.BytesIO()
    torch.save(torchvision.models.resnet18(num_classes=5), pickled)
    with pytest.raises(NotAStateDict, match=r"model\.state_dict\(\)"):
        ul.load_checkpoint(pickled.getvalue(), "torchvision:resnet18", 5)
    with pytest.raises(NotAStateDict):
        read_state_dict(b"hello, not weights at all")


def test_a_mismatched_state_dict_lists_missing_unexpected_and_misshaped(
    resnet: ul.SplitModel,
) -> None:
    sd = dict(resnet.state_dict())
    sd.pop("layer1.0.conv1.weight")
    sd["extra.weight"] = torch.zeros(2)
    sd["fc.weight"] = torch.zeros(7, 512)
    buf = io.BytesIO()
    torch.save(sd, buf)
    with pytest.raises(StateDictMismatch) as info:
        ul.load_checkpoint(buf.getvalue(), "torchvision:resnet18", 5)
    assert info.value.missing == ["layer1.0.conv1.weight"]
    assert info.value.unexpected == ["extra.weight"]
    assert info.value.mismatched[0].startswith("fc.weight: (7, 512)")
