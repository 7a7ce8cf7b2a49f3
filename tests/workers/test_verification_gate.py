"""The verification gate on metrics alone: a sample-scope result that forgot nothing is
refused with the reason, one that looks retrained passes."""

from __future__ import annotations

from app.core.config import Settings
from workers.pipeline import gate

# the parent remembers its 240 forget samples (100 %) and gets 89 % of held-out data right
PARENT = {"UA": 0.0, "VA": 89.0, "TA": 90.0}


def _result(ua: float) -> dict[str, float]:
    return {"UA": ua, "TA": 89.5, "forget_count": 240, "val_count": 300}


def test_unchanged_forget_behaviour_is_refused_with_the_reason() -> None:
    why = gate(_result(0.5), PARENT, "sample", Settings())
    assert why is not None and "indistinguishable from the parent" in why


def test_retrain_like_forgetting_passes() -> None:
    assert gate(_result(9.0), PARENT, "sample", Settings()) is None


def test_a_single_sample_cannot_be_told_apart_and_passes() -> None:
    one = {**_result(0.0), "forget_count": 1}
    assert gate(one, PARENT, "sample", Settings()) is None


def test_registration_minimum_is_the_engines() -> None:
    import unlearning as ul
    from app.registry.training_set import MIN_VAL_SAMPLES

    assert MIN_VAL_SAMPLES == ul.MIN_VAL
