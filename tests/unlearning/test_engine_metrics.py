from __future__ import annotations

import numpy as np
import pytest

import unlearning as ul


def test_mia_on_perfectly_separable_members_and_non_members() -> None:
    rng = np.random.default_rng(0)
    members = rng.uniform(0.95, 1.0, 300)
    non_members = rng.uniform(0.0, 0.4, 300)
    assert ul.mia_efficacy(members, non_members, rng.uniform(0.0, 0.4, 50)) == 100.0
    assert ul.mia_efficacy(members, non_members, rng.uniform(0.95, 1.0, 50)) == 0.0
    half = np.concatenate([rng.uniform(0.0, 0.4, 25), rng.uniform(0.95, 1.0, 25)])
    assert ul.mia_efficacy(members, non_members, half) == 50.0


def test_avg_gap_arithmetic() -> None:
    retrain = {"UA": 5.0, "RA": 100.0, "TA": 94.0, "MIA": 12.0}
    method = {"UA": 3.0, "RA": 99.0, "TA": 95.0, "MIA": 16.0, "probe_UA": 50.0}
    assert ul.avg_gap(method, retrain) == pytest.approx((2 + 1 + 1 + 4) / 4)
    assert ul.avg_gap(retrain, retrain) == 0.0


def test_evaluate_reports_points(digits_model: ul.SplitModel, class_data: ul.UnlearnData):
    m = ul.evaluate(digits_model, class_data, device="cpu")
    assert {"UA", "RA", "TA", "MIA", "probe_UA"} <= set(m)
    assert all(0.0 <= m[k] <= 100.0 for k in ("UA", "RA", "TA", "MIA", "probe_UA"))
    assert m["UA"] < 5 and m["RA"] > 95
    # The probe never saw the forgotten class, so it cannot name it: shallow-forgetting check.
    assert m["probe_UA"] == 100.0
