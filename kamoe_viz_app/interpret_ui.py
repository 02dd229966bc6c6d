"""Shared widgets of the interpretation pages: cached results per run, charts with PNG/SVG downloads, tables with
CSV downloads, and error boxes. Layout only; every number comes from kamoe_viz.interpret."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from kamoe_viz import labels
from kamoe_viz.charts import chart_bytes, chart_spec
from kamoe_viz.errors import KamoeError
from kamoe_viz.labels import METRIC_LABELS
from kamoe_viz_app.safe import esc, unexpected
from kamoe_viz_app.state import RUN_CACHE, run_cached, run_key

REFERENCE_ROWS = 2000  # rows of the training split used as the reference set for curves and statistics
MAX_CHARTS_PER_RUN = 64  # chart specs kept per run (least recently shown dropped first)


def cached(run: Any, name: str, compute: Callable[[], Any], spinner: str = "Computing…") -> Any:
    """``compute()`` once per (run, name) in this session; a spinner on the first call only."""
    per_run = st.session_state.get(RUN_CACHE, {}).get(run_key(run), {})
    if name in per_run:
        return per_run[name]
    with st.spinner(spinner):
        return run_cached(run, name, compute)


def _slug(name: str) -> str:
    """A file name from a view key."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:80] or "chart"


def _token(name: str) -> str:
    """A short, unique widget key from a (possibly long) view key."""
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:12]


def _chart_specs(run: Any) -> OrderedDict:
    per_run = st.session_state.setdefault(RUN_CACHE, {}).setdefault(run_key(run), {})
    return per_run.setdefault("_chart_specs", OrderedDict())


def show_chart(
    run: Any,
    key: str,
    build: Callable[[], alt.TopLevelMixin],
    where: Any = None,
    stretch: bool = False,
    select: str | None = None,
    widget_key: str | None = None,
) -> Any:
    """A chart, built and validated once per (run, key) and then served from the session's cache (a rerun costs
    only the transfer), with PNG and SVG download buttons (rendered only when clicked).

    ``stretch``: a single (or layered) chart takes its container's width; composite charts (facets,
    concatenations) keep their own size. Charts are not put beside tables: a chart wider than its column would run
    under the table (its labels and legend hidden).
    ``key`` must name everything the chart depends on (layer, split, options...). With ``select`` (the name of
    a selection parameter of the chart) clicks rerun the page and the selection event is returned.
    """
    where = where or st
    specs = _chart_specs(run)
    if key in specs:
        specs.move_to_end(key)
    else:
        spec = chart_spec(build())
        # Streamlit turns each inline dataset into Arrow on every rerun; frames make that cheap.
        shown = {**spec, "datasets": {name: pd.DataFrame(rows) for name, rows in spec.get("datasets", {}).items()}}
        specs[key] = (spec, shown)
        while len(specs) > MAX_CHARTS_PER_RUN:
            specs.popitem(last=False)
    spec, shown = specs[key]
    is_composite = any(k in spec for k in ("facet", "hconcat", "concat", "vconcat")) or "column" in spec.get(
        "encoding", {}
    )
    width = "stretch" if (stretch and not is_composite) else "content"
    if select:
        event = where.vega_lite_chart(
            shown, width=width, on_select="rerun", selection_mode=select, key=widget_key or f"sel_{_token(key)}"
        )
    else:
        event = where.vega_lite_chart(shown, width=width)
    slug, token = _slug(key), _token(key)
    row = where.container(horizontal=True, gap="small")
    row.download_button(
        "PNG",
        data=lambda: chart_bytes(spec, "png"),
        file_name=f"{slug}.png",
        mime="image/png",
        key=f"png_{token}",
        icon=":material/image:",
        on_click="ignore",
        help="Save this chart as a PNG image (2× resolution)",
    )
    row.download_button(
        "SVG",
        data=lambda: chart_bytes(spec, "svg"),
        file_name=f"{slug}.svg",
        mime="image/svg+xml",
        key=f"svg_{token}",
        icon=":material/draw:",
        on_click="ignore",
        help="Save this chart as an SVG vector image",
    )
    return event


# Column headers as people read them; the CSV download keeps the data's own (snake_case) names.
_HEADERS = {
    "f_x": "f(x)",
    "f_baseline": "f(baseline)",
    "top1_share": "top-1 share",
    "rmse_on_won_rows": "RMSE on rows won",
    "truth_name": "true regime",
    "phi_range": "φ range",
    "mean_abs_phi": "mean |φ|",
    **METRIC_LABELS,
    "nmi": "NMI",
    "ari": "ARI",
}
_WORDS = {**METRIC_LABELS, "nmi": "NMI", "ari": "ARI", "top1": "top-1"}  # words inside snake_case names


def readable_header(column: str) -> str:
    """``top1_share`` -> ``top-1 share``, ``rmse_change`` -> ``RMSE change``, ``mean_weight`` -> ``mean weight``."""
    if column in _HEADERS:
        return _HEADERS[column]
    words = [_WORDS.get(word, word) for word in column.split("_")]
    if "abs" in words[:-1]:  # mean_abs_output_change -> mean |output change|
        at = words.index("abs")
        words[at:] = [f"|{' '.join(words[at + 1 :])}|"]
    return " ".join(words)


def readable_columns(frame: pd.DataFrame) -> dict[str, Any]:
    """``st.dataframe`` column config that shows the frame's snake_case columns under readable headers."""
    return {
        str(c): st.column_config.Column(readable_header(str(c)))
        for c in frame.columns
        if "_" in str(c) or str(c) in _HEADERS
    }


def show_table(
    frame: pd.DataFrame, name: str, where: Any = None, height: int | str = "auto", column_config: dict | None = None
) -> None:
    """The table (readable headers) and a CSV download button (the frame as it is)."""
    where = where or st
    config = {**readable_columns(frame), **(column_config or {})}
    where.dataframe(frame, hide_index=True, width="stretch", height=height, column_config=config or None)
    csv_download(frame, name, where)


def show_text_table(frame: pd.DataFrame, name: str, number_format: str = "{:.4g}") -> None:
    """A short table whose text columns wrap instead of being cut (e.g. a metric's definition), numbers in
    ``number_format``, and its CSV download."""
    numbers = {c: number_format for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    st.table(frame.style.format(numbers).hide(axis="index"))
    csv_download(frame, name)


def csv_download(frame: pd.DataFrame, name: str, where: Any = None, label: str = "CSV") -> None:
    where = where or st
    where.download_button(
        label,
        data=lambda: frame.to_csv(index=False).encode("utf-8"),
        file_name=f"{_slug(name)}.csv",
        mime="text/csv",
        key=f"csv_{_token(name)}",
        icon=":material/download:",
        on_click="ignore",
        help="Download this table as CSV",
    )


@contextlib.contextmanager
def guarded(what: str) -> Iterator[None]:
    """Show a clear message instead of a traceback when one view of a page fails."""
    try:
        yield
    except KamoeError as err:
        st.error(f"{what}: {esc(err)}")
    except Exception as err:
        st.error(unexpected(err, f"{what} (showing it)"))


def replace_model(run: Any, model: Any) -> Any:
    """A copy of the run with another model (e.g. after a grid update); it gets a new identity (unsaved)."""
    if dataclasses.is_dataclass(run):
        fields = {f.name for f in dataclasses.fields(run)}
        changes = {"model": model}
        if "run_id" in fields:
            changes["run_id"] = None
        return dataclasses.replace(run, **changes)  # type: ignore[type-var]  # run is a dataclass instance here
    clone = object.__new__(type(run))
    clone.__dict__.update({k: v for k, v in vars(run).items() if k != "_session_token"})
    clone.model = model
    clone.run_id = None
    return clone


def gate_label(run: Any) -> str:
    model = run.config.model
    if model.kind == "standard":
        return "no gate (single expert)"
    return labels.gate_label(model.gate)


def page_start(title: str, caption: str, single_expert_note: str | None = None) -> Any:
    """Title and caption of an interpretation page, then the current run; stops the page (after saying why) when
    there is no run, or, given ``single_expert_note``, when the run has no gate to look at."""
    from kamoe_viz_app.state import require_run

    st.title(title)
    st.caption(caption)
    run = require_run()
    if run is None:
        st.stop()
    if single_expert_note and (run.config.model.kind == "standard" or run.model.n_experts < 2):
        st.info(single_expert_note, icon="ℹ️")
        st.stop()
    return run
