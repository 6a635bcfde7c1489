"""The evaluation report: one self-contained HTML file (no scripts, no external assets).

Every string that comes from data or the user (model names, refs, column values, class
labels) goes through `html.escape`: a report is opened in a browser and a slice value such as
`<script>` must be shown, never run.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from threadline.evaluate.svg import histogram, unit_lines

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from threadline.evaluate.result import EvaluationResult

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.better{color:#16691b;font-weight:600}.worse{color:#a11;font-weight:600}.noise{color:#666}
.charts{display:flex;flex-wrap:wrap;gap:1.5em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.4g}"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """A table; the first `left` columns are left-aligned text. Cells are already HTML."""
    cls = [' class="l"' if i < left else "" for i in range(len(head))]
    out = ["<table><tr>", *(f"<th{c}>{_e(h)}</th>" for c, h in zip(cls, head, strict=True)), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td{c}>{cell}</td>" for c, cell in zip(cls, row, strict=True))
                   + "</tr>")
    out.append("</table>")
    return "".join(out)


def _header(r: EvaluationResult) -> str:
    items = [("model", f"{r.model.name} v{r.model.version} ({r.model.uri}, {r.model.flavor})"),
             ("data", f"{r.data.ref} @ commit {r.data.commit}"), ("target", r.target),
             ("task", r.task), ("rows", f"{r.rows:,}"), ("evaluated at", r.created_at),
             ("bootstrap", f"{r.replicates} replicates, seed {r.seed}")]
    if r.against is not None:
        items.insert(1, ("champion", f"{r.against.name} v{r.against.version} ({r.against.uri})"))
    if r.run_id:
        items.append(("run", r.run_id))
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f"<h1>Evaluation of {_e(r.model.name)} v{r.model.version}</h1><dl>{body}</dl>"


def _metrics(r: EvaluationResult) -> str:
    rows = []
    for name, value in r.metrics.items():
        ci = r.intervals.get(name)
        span = "&ndash;" if ci is None or ci.low is None else f"[{_num(ci.low)}, {_num(ci.high)}]"
        rows.append([_e(name), _num(value), span])
    level = next(iter(r.intervals.values())).level if r.intervals else 0.95
    return "<h2>Metrics</h2>" + _table(["metric", "value", f"{level:.0%} CI"], rows)


def _confusion(d: dict[str, Any]) -> str:
    classes = [_e(c) for c in d.get("classes", [])]
    matrix = d.get("confusion_matrix")
    if not matrix:
        return ""
    rows = [[classes[i], *(str(c) for c in row)] for i, row in enumerate(matrix)]
    return ("<h2>Confusion matrix</h2><p>rows: actual, columns: predicted</p>"
            + _table(["actual \\ predicted", *d.get("classes", [])], rows))


def _charts(r: EvaluationResult) -> str:
    d = r.diagnostics
    charts = []
    if d.get("roc"):
        series = [(str(label), c["fpr"], c["tpr"]) for label, c in d["roc"].items()]
        charts.append(unit_lines("ROC curve", series, "false positive rate", "true positive rate"))
    bins = [b for b in d.get("calibration", []) if b["rows"]]
    if bins:
        series = [("model", [b["mean_predicted"] for b in bins], [b["observed_rate"] for b in bins])]
        charts.append(unit_lines(f"Calibration: {d.get('calibration_of', '')}", series,
                                 "mean predicted probability", "observed rate"))
    if d.get("residuals", {}).get("counts"):
        res = d["residuals"]
        charts.append(histogram("Residuals", res["edges"], res["counts"], "prediction - actual"))
    if not charts:
        return ""
    table = ""
    if bins:
        table = _table(["bin", "rows", "mean predicted", "observed"],
                       ([f"{b['low']:.1f}&ndash;{b['high']:.1f}", str(b["rows"]), _num(b["mean_predicted"]),
                         _num(b["observed_rate"])] for b in d["calibration"]))
    return f'<h2>Curves</h2><div class="charts">{"".join(charts)}</div>{table}'


def _slices(r: EvaluationResult) -> str:
    if not r.slices:
        return ""
    names = list(r.metrics)
    rows = ([_e(s.column), _e(s.value), f"{s.rows:,}", *(_num(s.metrics.get(n)) for n in names)]
            for s in r.slices)
    return "<h2>Slices</h2>" + _table(["column", "value", "rows", *names], rows, left=2)


def _comparison(r: EvaluationResult) -> str:
    if not r.comparison or r.against is None:
        return ""
    cls = {"challenger better": "better", "champion better": "worse"}
    rows = []
    for c in r.comparison:
        span = "&ndash;" if c.interval.low is None else f"[{_num(c.interval.low)}, {_num(c.interval.high)}]"
        rows.append([_e(c.metric), _num(c.champion), _num(c.challenger), _num(c.difference), span,
                     f'<span class="{cls.get(c.verdict, "noise")}">{_e(c.verdict)}</span>'])
    title = (f"<h2>Champion/challenger</h2><p>champion {_e(r.against.uri)} (v{r.against.version}) "
             f"vs challenger {_e(r.model.uri)} (v{r.model.version}), paired bootstrap on the same "
             "rows; difference = challenger - champion</p>")
    return title + _table(["metric", "champion", "challenger", "difference", "95% CI", "verdict"],
                          rows)


def render_html(result: EvaluationResult) -> str:
    """The report of an evaluation as one HTML document."""
    notes = "".join(f"<li>{_e(n)}</li>" for n in result.notes)
    sections = [_header(result), _metrics(result), _comparison(result), _confusion(result.diagnostics),
                _charts(result), _slices(result), f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""]
    title = _e(f"Evaluation of {result.model.name} v{result.model.version}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{_STYLE}</style></head><body>"
            + "".join(sections) + "</body></html>\n")
