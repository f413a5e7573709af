import math

import numpy as np
import pytest

from bpviz.history import History, Series


def fill(series: Series, values) -> None:
    for step, value in enumerate(values):
        series.append(step, value)


def folded(series: Series):
    """Every bucket, the one still being filled included."""
    return series.buckets + ([series._open] if series._open is not None else [])


def test_recent_points_are_kept_at_full_resolution():
    rng = np.random.default_rng(0)
    values = rng.normal(size=5000).tolist()
    s = Series(recent=100, buckets=10)
    fill(s, values)
    assert list(s.recent) == [(step, values[step]) for step in range(4900, 5000)]
    snap = s.snapshot()
    assert snap["step"][-100:] == list(range(4900, 5000))
    assert snap["value"][-100:] == values[-100:]  # exact, not rounded or averaged
    assert snap["low"][-100:] == values[-100:] and snap["high"][-100:] == values[-100:]
    assert s.last() == (4999, values[-1])


def test_short_series_is_all_full_resolution():
    s = Series(recent=10, buckets=4)
    fill(s, [3.0, 1.0, 2.0])
    assert s.snapshot() == {
        "step": [0, 1, 2],
        "value": [3.0, 1.0, 2.0],
        "low": [3.0, 1.0, 2.0],
        "high": [3.0, 1.0, 2.0],
    }
    assert Series().snapshot() == {"step": [], "value": [], "low": [], "high": []}
    assert Series().last() is None


def test_memory_and_snapshot_stay_flat_however_long_the_run():
    bound = 1000 + 500 + 1
    s = Series(recent=1000, buckets=500)
    lengths = {}
    for step in range(400_000):
        s.append(step, 1.0 + (step % 7))
        if (step + 1) % 50_000 == 0:
            assert len(s.recent) <= 1000 and len(s.buckets) <= 500
            # an even overview: older points are not squeezed into ever fewer buckets
            counts = [b.count for b in s.buckets]
            assert max(counts) <= 2 * min(counts)
            lengths[step + 1] = len(s.snapshot()["step"])
    assert s.count == 400_000
    assert all(n <= bound for n in lengths.values()), lengths
    # twice the points, (up to the one bucket still being filled) no more to plot
    assert lengths[400_000] <= lengths[200_000] + 1, lengths
    # and the buckets still cover every point
    assert sum(b.count for b in folded(s)) + len(s.recent) == 400_000


def test_buckets_tile_the_older_points_with_exact_min_max_and_mean():
    rng = np.random.default_rng(1)
    values = rng.lognormal(size=30_000)
    s = Series(recent=500, buckets=64)
    fill(s, values.tolist())
    buckets = folded(s)
    assert buckets[0].step_first == 0
    for a, b in zip(buckets, buckets[1:]):
        assert b.step_first == a.step_last + 1  # contiguous, no gaps or overlaps
    assert buckets[-1].step_last + 1 == s.recent[0][0]
    assert len(s.buckets) >= 64 // 2  # decimation keeps at least half the allowed buckets
    for b in buckets:
        covered = values[b.step_first : b.step_last + 1]
        assert b.count == len(covered)
        assert b.low == covered.min() and b.high == covered.max()
        assert b.mean == pytest.approx(covered.mean(), rel=1e-12)


def test_a_spike_survives_decimation_and_the_mean_is_kept():
    rng = np.random.default_rng(2)
    values = 1.0 + 0.01 * rng.standard_normal(101_000)
    values[500] = 1e9
    values[700] = -3.0  # the true minimum, also long folded away
    s = Series(recent=1000, buckets=500)
    fill(s, values.tolist())
    snap = s.snapshot()
    assert len(snap["step"]) <= 1501
    assert max(snap["high"]) == 1e9
    assert min(snap["low"]) == values.min() == -3.0
    # the buckets' means, weighted by how many points each covers, give the mean of everything
    counts = [b.count for b in folded(s)] + [1] * len(s.recent)
    n_folded = len(folded(s))
    assert snap["value"][:n_folded] == [b.mean for b in folded(s)]
    total = float(np.dot(np.asarray(snap["value"], dtype=np.float64), np.asarray(counts, dtype=np.float64)))
    assert sum(counts) == len(values)
    assert total / len(values) == pytest.approx(np.mean(values, dtype=np.float64), rel=1e-9)


def test_nan_does_not_poison_the_low_and_high_of_a_bucket_with_finite_values():
    s = Series(recent=0, buckets=2)  # every point is folded at once
    values = [float("nan"), 2.0, 5.0, float("nan"), -1.0, float("nan"), 4.0, 3.0]
    fill(s, values)
    buckets = folded(s)
    assert sum(b.count for b in buckets) == len(values)
    for b in buckets:
        covered = [v for v in values[b.step_first : b.step_last + 1] if not math.isnan(v)]
        assert covered  # with these sizes every bucket has a finite value
        assert b.low == min(covered) and b.high == max(covered)
    snap = s.snapshot()
    assert min(snap["low"]) == -1.0 and max(snap["high"]) == 5.0


def test_an_all_nan_stretch_stays_nan_and_inf_is_kept():
    s = Series(recent=1, buckets=100)
    fill(s, [float("nan")] * 4 + [float("inf"), 1.0])
    first = s.buckets[0]
    assert math.isnan(first.low) and math.isnan(first.high)
    assert np.nanmax(s.snapshot()["high"]) == float("inf")


@pytest.mark.parametrize("recent,buckets,n", [(10, 4, 1000), (0, 3, 777), (1000, 500, 50_000), (5, 1, 300)])
def test_snapshot_steps_increase(recent, buckets, n):
    s = Series(recent=recent, buckets=buckets)
    fill(s, np.sin(np.arange(n)).tolist())
    steps = s.snapshot()["step"]
    assert len(steps) <= recent + buckets + 1
    assert all(a < b for a, b in zip(steps, steps[1:]))
    assert steps[-1] == n - 1


def test_history_records_several_series():
    h = History(recent=50, buckets=10)
    for step in range(1000):
        values = {"loss": 1.0 / (step + 1), "acc": step / 1000}
        if step % 10 == 0:
            values["test_loss"] = 2.0 / (step + 1)
        h.record(step, values)
    assert set(h.series) == {"loss", "acc", "test_loss"}
    assert h.last("loss") == 1.0 / 1000 and h.last("acc") == 0.999 and h.last("test_loss") == 2.0 / 991
    assert h.last("missing") is None
    assert h.series["test_loss"].count == 100

    sub = h.snapshot(["loss", "test_loss", "missing"])
    assert set(sub) == {"loss", "test_loss"}
    assert sub["loss"] == h.series["loss"].snapshot()
    assert set(h.snapshot()) == {"loss", "acc", "test_loss"}
    for snap in h.snapshot().values():
        assert len(snap["step"]) <= 50 + 10 + 1
    assert h.snapshot(["loss"])["loss"]["step"][-1] == 999
