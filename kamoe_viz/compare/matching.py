"""Match experts across seeds before pooling them.

Expert numbering is arbitrary per seed: expert 0 of seed 1 may do the job of expert 2 of seed 0, so pooling
"expert k" over seeds mixes unrelated experts. Each seed's experts are matched to the first seed's (per variant) by
the Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`) on a profile of each expert:

- its gate weights on the same test rows, when every seed sees the same split (a common probe);
- otherwise its mean gate weight per true regime, when the dataset knows its regimes;
- otherwise nothing can be compared, and the numbering stays as each seed drew it (the note says so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

SEED_EXPERT = "seed_expert"  # the expert's own number in its seed, kept beside the matched ``expert``

MATCHED_BY_ROWS = "outputs on the same test rows"
MATCHED_BY_REGIMES = "mean weight per true regime"


def match_experts(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``labels`` with ``labels[j]`` = the reference expert that expert ``j`` of ``other`` matches.

    ``reference`` and ``other`` are (experts, features) profiles; the matching minimises the summed squared
    distance between matched profiles (one-to-one)."""
    ref = np.asarray(reference, dtype=float)
    oth = np.asarray(other, dtype=float)
    if ref.shape != oth.shape:
        raise ValueError(f"profiles differ in shape: {ref.shape} vs {oth.shape}")
    cost = ((ref[:, None, :] - oth[None, :, :]) ** 2).sum(axis=2)  # (reference expert, other expert)
    rows, cols = linear_sum_assignment(cost)
    labels = np.empty(len(cols), dtype=int)
    labels[cols] = rows
    return labels


def _profiles(samples: pd.DataFrame, by_regime: bool) -> np.ndarray:
    """(experts, features) profile of one run's gate samples."""
    if by_regime:
        table = samples.pivot_table(index="expert", columns="regime", values="weight", aggfunc="mean")
    else:
        table = samples.pivot_table(index="expert", columns="row", values="weight", aggfunc="mean")
    return table.sort_index().fillna(0.0).to_numpy(float)


def align_gate_samples(gate_samples: pd.DataFrame, shared_rows: bool) -> tuple[pd.DataFrame, str]:
    """Gate samples with ``expert`` renumbered to match the first seed of each variant, and a one-line note
    saying how (``seed_expert`` keeps each seed's own number). ``shared_rows``: every seed saw the same rows."""
    if not len(gate_samples) or "seed" not in gate_samples.columns:
        return gate_samples, ""
    if gate_samples.groupby("variant")["seed"].nunique().max() < 2:
        return gate_samples, ""  # one seed per variant: nothing is pooled
    has_regimes = "regime" in gate_samples.columns and gate_samples["regime"].notna().all()
    if not shared_rows and not has_regimes:
        return gate_samples, (
            "Experts are numbered as each seed drew them (no common test rows or regimes to "
            "match them on), so 'expert k' pooled over seeds mixes unrelated experts."
        )
    by_regime = not shared_rows
    out = gate_samples.copy()
    out[SEED_EXPERT] = out["expert"]
    moved = 0
    for _variant, group in out.groupby("variant", sort=False):
        seeds = list(dict.fromkeys(group["seed"]))
        reference = _profiles(group[group["seed"] == seeds[0]], by_regime)
        for seed in seeds[1:]:
            mask = (out["variant"] == _variant) & (out["seed"] == seed)
            profile = _profiles(out[mask], by_regime)
            if profile.shape != reference.shape:
                continue  # a different number of experts cannot be matched one-to-one
            labels = match_experts(reference, profile)
            experts = np.sort(out.loc[mask, SEED_EXPERT].unique())
            mapping = dict(zip(experts, labels, strict=True))  # profile rows are in sorted expert order
            out.loc[mask, "expert"] = out.loc[mask, SEED_EXPERT].map(mapping)
            moved += int((labels != np.arange(len(labels))).any())
    how = MATCHED_BY_ROWS if shared_rows else MATCHED_BY_REGIMES
    return out, (
        f"Experts are matched across seeds before pooling (Hungarian matching to the first seed on their "
        f"{how}): expert numbering is arbitrary per seed; {moved} run(s) were renumbered."
    )


__all__ = ["MATCHED_BY_REGIMES", "MATCHED_BY_ROWS", "SEED_EXPERT", "align_gate_samples", "match_experts"]
