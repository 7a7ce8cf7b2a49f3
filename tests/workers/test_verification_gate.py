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


def test_a_mixed_result_is_judged_part_by_part() -> None:
    """A class of 180 samples plus 240 single ones: the class part must reach the class UA,
    the single samples are judged against the parent on their own, not hidden by the class
    part's ~100 UA in the overall figure."""
    parent = {**PARENT, "class_UA": 0.0, "sample_UA": 0.0}

    def mixed(class_ua: float, sample_ua: float) -> dict[str, float]:
        overall = (180 * class_ua + 240 * sample_ua) / 420
        return {
            **_result(overall),
            "class_UA": class_ua,
            "sample_UA": sample_ua,
            "forget_count": 420,
            "sample_forget_count": 240,
        }

    assert gate(mixed(100.0, 9.0), parent, "mixed", Settings()) is None
    samples_kept = gate(mixed(100.0, 0.5), parent, "mixed", Settings())
    assert samples_kept is not None and "indistinguishable from the parent" in samples_kept
    assert "240 samples" in samples_kept
    class_kept = gate(mixed(60.0, 9.0), parent, "mixed", Settings())
    assert class_kept is not None and "forgotten class still recognised" in class_kept
