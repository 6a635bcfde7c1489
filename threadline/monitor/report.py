"""The monitoring report of one check: one self-contained HTML file.

For each version that answered in the window: the drift table (test, corrected p-value, effect
size and verdict per column), reference against current histograms of the drifted columns, the
realised accuracy over time, then the alerts and the policy's actions. Every string from data
or users is escaped; the charts are inline SVG (no scripts, no external assets).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc
from sqlalchemy import select

from threadline.errors import NotFound
from threadline.evaluate.svg import paired_bars, unit_lines
from threadline.meta.models import MonitorCheckRow
from threadline.monitor.accuracy import realised
from threadline.monitor.checks import References, window_inputs
from threadline.monitor.reference import NumericReference
from threadline.monitor.window import summarise
from threadline.serving.feedback import join_feedback

if TYPE_CHECKING:
    import pyarrow as pa

    from threadline.monitor.loop import Monitor

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#f3f3f3}.drift{color:#a11;font-weight:600}.charts{display:flex;flex-wrap:wrap;gap:1em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any) -> str:
    return "&ndash;" if value is None else f"{value:.4g}" if isinstance(value, float) else _e(value)


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return "".join([*out, "</table>"])


def _check_row(monitor: Monitor, deployment: str, check_id: str | None) -> MonitorCheckRow:
    with monitor.db.session() as session:
        query = select(MonitorCheckRow).where(MonitorCheckRow.deployment == deployment)
        if check_id:
            query = query.where(MonitorCheckRow.id.startswith(check_id))
        row = session.scalar(query.order_by(MonitorCheckRow.created_at.desc()).limit(1))
    if row is None:
        raise NotFound(f"no monitoring check of {deployment!r}"
                       + (f" starting with {check_id!r}" if check_id else "")
                       + f"; run `threadline monitor run {deployment} --once` first")
    return row


def _histograms(references: References, vid: str, drifted: list[str], rows: pa.Table) -> str:
    if not drifted or rows.num_rows == 0:
        return ""
    reference = references.get(vid.replace("/", "@"))
    window = summarise(reference, window_inputs(rows, reference))
    charts = []
    for name in drifted:
        ref, cur = reference.columns.get(name), window.columns.get(name)
        if ref is None or cur is None:
            continue
        ref_total, cur_total = float(ref.counts.sum()) or 1.0, float(cur.counts.sum()) or 1.0
        if isinstance(ref, NumericReference):
            ends = [f"{ref.lo:.3g}", *(f"{e:.3g}" for e in ref.edges[1:]), f"{ref.hi:.3g}"]
            labels = ends[:len(ref.counts)]
        else:
            labels = [*ref.categories, "other"]
        charts.append(paired_bars(f"{name}: reference vs window", labels,
                                  [("reference", list(ref.counts / ref_total)),
                                   ("window", list(cur.counts / cur_total))], name))
    return f'<div class="charts">{"".join(charts)}</div>'


def _accuracy_chart(joined: pa.Table, metric: str) -> str:
    if joined.num_rows == 0 or "label" not in joined.column_names:
        return ""
    labelled = joined.filter(pc.is_valid(joined["label"]))
    if labelled.num_rows == 0:
        return "<p>No labels have arrived yet.</p>"
    ts = labelled["ts"].to_numpy()
    span = max(int(ts.max() - ts.min()), 1)
    points = realised(labelled, metric=metric, window_ms=max(span // 20, 1))
    start = float(ts.min())
    series: dict[str, tuple[list[float], list[float]]] = {}
    for p in points:
        xs, ys = series.setdefault(f"v{p.version} {p.route}", ([], []))
        xs.append((p.window_start - start) / span)
        ys.append(p.value if p.value is not None else 0.0)
    return unit_lines(f"{metric} over time", [(k, xs, ys) for k, (xs, ys) in series.items()],
                      "time (first to last label)", metric, diagonal=False)


def render_report(monitor: Monitor, deployment: str, check_id: str | None = None) -> str:
    """The HTML report of a deployment's latest check (or the check whose id starts with
    `check_id`)."""
    row = _check_row(monitor, deployment, check_id)
    result = row.result
    policy = monitor.policy(deployment)
    try:
        joined = join_feedback(monitor.registry.repos, deployment)
    except NotFound:
        joined = None
    window = joined.filter(pc.and_(pc.greater_equal(joined["ts"], row.window_start),
                                   pc.less(joined["ts"], row.window_end))) if joined is not None else None
    parts = [f"<h1>Monitoring of {_e(deployment)}</h1>",
             f"<p>check {_e(row.id)}: {row.rows} rows, verdict <b>{_e(row.verdict)}</b></p>"]
    for vid, found in (result.get("versions") or {}).items():
        drift = found.get("drift") or {}
        parts.append(f"<h2>{_e(vid)}: {found['rows']} rows</h2>")
        columns = drift.get("columns") or []
        parts.append(_table(["column", "test", "p (corrected)", "effect", "value", "verdict"], [
            [_e(c["column"]), _e(c.get("test")), _num(c.get("p_adjusted")), _e(c.get("effect")),
             _num(c.get("effect_value")),
             '<span class="drift">drift</span>' if c.get("drifted") else
             ("no verdict" if c.get("drifted") is None else "ok")] for c in columns]))
        if window is not None:
            mine = window.filter(pc.equal(window["model"], vid.split("/")[0]))
            mine = mine.filter(pc.equal(mine["version"], int(vid.split("/")[1])))
            parts.append(_histograms(monitor.references, vid, list(drift.get("drifted") or []), mine))
        accuracy = found.get("accuracy") or {}
        estimated = (found.get("estimated_accuracy") or {}).get("value")
        parts.append(f"<p>{_e(accuracy.get('metric'))}: {_num(accuracy.get('value'))} on "
                     f"{accuracy.get('labelled_rows', 0)} labelled rows; estimated before labels: "
                     f"{_num(estimated)}; error rate {_num(found.get('error_rate'))}; p95 latency "
                     f"{_num((found.get('latency') or {}).get('p95_ms'))} ms</p>")
    if joined is not None:
        parts.append("<h2>Accuracy over time</h2>" + _accuracy_chart(joined, policy.metric))
    actions = monitor.actions(deployment, limit=50)
    parts.append("<h2>Actions</h2>" + _table(["id", "action", "status", "reason", "undone"], [
        [str(a["id"]), _e(a["action"]), _e(a["status"]), _e(a["reason"]), "yes" if a["undone_at"] else ""]
        for a in actions]))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Monitoring of {_e(deployment)}</title><style>{_STYLE}</style></head><body>"
            + "".join(parts) + "</body></html>\n")
