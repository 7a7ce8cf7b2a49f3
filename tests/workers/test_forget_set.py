"""What a job forgets: only the samples no earlier version erased, with the earlier ones in
neither retain nor forget, whether the data still holds them (a built-in dataset) or not
(a purged upload); a class erased whole earlier stays out of the held-out metrics."""

from __future__ import annotations

import dataclasses

import torch

from lethe.demo import DEMO_DATASET, DEMO_PARAMS
from workers.pipeline import incremental_data, load_dataset


def test_earlier_erased_samples_are_in_neither_retain_nor_forget() -> None:
    ds = load_dataset(DEMO_DATASET, DEMO_PARAMS)
    ids = list(ds.train.ids)
    earlier = [i for i, y in zip(ids, ds.train.y.tolist(), strict=True) if y == 3]
    new = [i for i, y in zip(ids, ds.train.y.tolist(), strict=True) if y != 3][:10]
    purged = dataclasses.replace(
        ds, train=ds.train.subset(torch.tensor([i not in set(earlier) for i in ids]))
    )
    for data in (
        incremental_data(ds, erased_before=earlier, new=new),  # the data still holds them
        incremental_data(purged, erased_before=earlier, new=new),  # the purge removed them
    ):
        assert list(data.forget.ids) == new
        assert set(data.retain.ids) == set(ids) - set(earlier) - set(new)
        assert data.forgotten_classes == (3,) and data.scope == "sample"
    # nothing erased before: exactly the engine's split
    plain = incremental_data(ds, erased_before=[], new=new)
    assert plain.forget.ids == tuple(new) and len(plain.retain) == len(ids) - len(new)
    assert plain.forgotten_classes == ()
    # a request naming only erased samples forgets nothing (the base is published as is)
    assert incremental_data(ds, erased_before=earlier, new=[]).scope == "empty"
