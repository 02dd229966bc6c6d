"""Sequential datasets, windowed into (n, window, F): a synthetic regime-switching series and real series that
ship inside statsmodels (offline)."""

from __future__ import annotations

import numpy as np

from kamoe_viz.data.base import Dataset
from kamoe_viz.data.splits import build_windows

_DYNAMICS = (
    "calm trend-follower: y = 0.85·y₋₁ + 0.4·u",
    "oscillating: y = −0.6·y₋₁ + sin(2u)",
    "volatile, driven: y = 0.3·y₋₁ − 0.9·u + 0.5 + extra noise",
    "mean-reverting to −1: y = 0.5·y₋₁ − 0.5 + 0.2·u²",
)


def regime_series(
    *,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    length: int = 3000,
    n_regimes: int = 3,
    persistence: float = 0.97,
    window: int = 16,
    horizon: int = 1,
    noise: float = 0.1,
    **_: object,
) -> Dataset:
    """A Markov-switching series y driven by an exogenous input u; each regime has its own dynamics."""
    rng = np.random.default_rng(2000 + seed)
    regime = np.zeros(length, dtype=int)
    for t in range(1, length):
        if rng.random() < persistence:
            regime[t] = regime[t - 1]
        else:
            regime[t] = rng.choice([r for r in range(n_regimes) if r != regime[t - 1]])
    u = np.zeros(length)
    y = np.zeros(length)
    for t in range(1, length):
        u[t] = 0.7 * u[t - 1] + 0.7 * rng.standard_normal()
        r = regime[t]
        eps = noise * rng.standard_normal()
        if r == 0:
            y[t] = 0.85 * y[t - 1] + 0.4 * u[t] + eps
        elif r == 1:
            y[t] = -0.6 * y[t - 1] + np.sin(2 * u[t]) + eps
        elif r == 2:
            y[t] = 0.3 * y[t - 1] - 0.9 * u[t] + 0.5 + 3 * eps
        else:
            y[t] = 0.5 * y[t - 1] - 0.5 + 0.2 * u[t] ** 2 + eps
    series = np.stack([y, u], axis=1)
    return build_windows(
        name="regime_series",
        series=series,
        feature_names=["y", "u"],
        target_index=0,
        window=window,
        horizon=horizon,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        description=(
            f"Synthetic regime-switching series ({length} steps, {n_regimes} regimes that persist with "
            f"probability {persistence}): y follows different dynamics in each regime, driven by an input u. "
            f"Predict y {horizon} step(s) after a window of {window}. Windows are split in time order "
            "(train, then validation, then test). The true regime of each predicted step is known."
        ),
        source="generated (kamoe_viz.data.sequences.regime_series)",
        regimes=regime,
        regime_names=[f"regime {r}: {_DYNAMICS[r]}" for r in range(n_regimes)],
        options=dict(
            length=length, n_regimes=n_regimes, persistence=persistence, window=window, horizon=horizon, noise=noise
        ),
    )


def sunspots(
    *, seed: int, test_fraction: float, val_fraction: float, window: int = 12, horizon: int = 1, **_: object
) -> Dataset:
    from statsmodels.datasets import sunspots as source

    values = source.load_pandas().data["SUNACTIVITY"].to_numpy(dtype=np.float64).reshape(-1, 1)
    return build_windows(
        name="sunspots",
        series=values,
        feature_names=["sunspots"],
        target_index=0,
        window=window,
        horizon=horizon,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        description=(
            f"Yearly sunspot numbers 1700-2008 (309 years; statsmodels, bundled). Predict the number "
            f"{horizon} year(s) after a window of {window}; the ~11-year cycle has changing amplitude. "
            "Split in time order."
        ),
        source="statsmodels.datasets.sunspots (bundled)",
        options=dict(window=window, horizon=horizon),
    )


def co2(
    *,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    window: int = 52,
    horizon: int = 1,
    target: str = "change",
    **_: object,
) -> Dataset:
    """Weekly Mauna Loa CO2. ``target="change"`` (default) models the week-to-week change, which is stationary; the
    level rises every year, so with ``"level"`` the test weeks (the latest ones) lie beyond anything the model saw
    in training and R² there is strongly negative for every model (measured: about -3)."""
    from statsmodels.datasets import co2 as source

    frame = source.load_pandas().data
    values = frame["co2"].interpolate(limit_direction="both").to_numpy(dtype=np.float64)
    week_of_year = frame.index.isocalendar().week.to_numpy(dtype=np.float64)
    season = np.stack([np.sin(2 * np.pi * week_of_year / 52.18), np.cos(2 * np.pi * week_of_year / 52.18)], axis=1)
    if target == "change":
        values, season, first = np.diff(values), season[1:], "co2_change"
        what = (
            f"the change in CO2 over week {horizon} after a window of {window} weekly changes (a difference "
            "series: stationary, so the later test weeks look like the training weeks)"
        )
    else:
        first = "co2"
        what = (
            f"CO2 {horizon} week(s) after a window of {window}; the test weeks lie beyond the training range "
            "(a rising trend), which no model here extrapolates well"
        )
    series = np.column_stack([values, season])
    return build_windows(
        name="co2",
        series=series,
        feature_names=[first, "season_sin", "season_cos"],
        target_index=0,
        window=window,
        horizon=horizon,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        description=(
            f"Weekly atmospheric CO2 at Mauna Loa, 1958-2001 (2,284 weeks, gaps interpolated; statsmodels, "
            f"bundled), with the season as two extra inputs. Predict {what}. Split in time order."
        ),
        source="statsmodels.datasets.co2 (bundled)",
        options=dict(window=window, horizon=horizon, target=target),
    )
