"""A self-contained HTML page for a native drift report (no scripts, no external resources)."""

from __future__ import annotations

from html import escape

from app.monitoring.result import DriftResult

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
.drift{background:#fde2e1}.ok{background:#e3f6e5}.verdict{font-size:1.2rem;font-weight:600}
"""


_HEADER = "".join(f"<th>{h}</th>" for h in ("feature", "type", "method", "score", "threshold", "result"))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def render(result: DriftResult) -> str:
    rows = "".join(
        f"<tr class=\"{'drift' if f.drifted else 'ok'}\"><td>{escape(f.feature)}</td>"
        f"<td>{escape(f.kind)}</td><td>{escape(f.method_label)}</td><td>{_fmt(f.score)}</td>"
        f"<td>{_fmt(f.threshold)}</td><td>{'drifted' if f.drifted else 'stable'}</td></tr>"
        for f in result.features
    )
    if result.insufficient:
        verdict_line = (f"Insufficient data: {result.current_rows} rows in the window and "
                        f"{result.reference_rows} in the reference; {result.min_rows} of each are "
                        "needed for a drift verdict. No test was run.")
    else:
        verdict = "Dataset drift detected" if result.dataset_drift else "No dataset drift"
        verdict_line = (f"{verdict}: {len(result.drifted_features)} of {len(result.features)} "
                        f"features drifted (share {_fmt(result.drift_share)}, threshold "
                        f"{_fmt(result.share_threshold)}).")
    pred = result.prediction_drift
    pred_line = (
        f"<p>Predicted-level drift: {escape(pred.method_label)} {_fmt(pred.score)} "
        f"(threshold {_fmt(pred.threshold)}) &mdash; {'drifted' if pred.drifted else 'stable'}</p>"
        if pred else ""
    )
    confidence = result.confidence_drift
    confidence_line = (
        f"<p>Confidence drift (the predicted level's probability against the version's held-out "
        f"rows): KS p-value {_fmt(confidence.score)} (threshold {_fmt(confidence.threshold)}), mean "
        f"{_fmt(confidence.current_mean)} vs {_fmt(confidence.reference_mean)} &mdash; "
        f"{'drifted' if confidence.drifted else 'stable'}</p>"
        if confidence else ""
    )
    importance = result.importance_drift
    importance_table = (
        "<h2>Importance</h2><p>Mean |exact TreeSHAP contribution| to the predicted level, "
        f"{importance.current_rows} window rows vs {importance.reference_rows} held-out rows; a "
        f"share change of {_fmt(importance.threshold)} or more is drift &mdash; "
        f"{'drifted' if importance.drifted else 'stable'}.</p><table><tr><th>feature</th>"
        "<th>held-out</th><th>window</th><th>share held-out</th><th>share window</th>"
        "<th>verdict</th></tr>"
        + "".join(
            f"<tr class=\"{'drift' if f.drifted else 'ok'}\"><td>{escape(f.feature)}</td>"
            f"<td>{_fmt(f.reference)}</td><td>{_fmt(f.current)}</td><td>{_fmt(f.reference_share)}"
            f"</td><td>{_fmt(f.current_share)}</td><td>{'drifted' if f.drifted else 'stable'}</td>"
            "</tr>"
            for f in importance.features)
        + "</table>"
        if importance else ""
    )
    unseen = result.unseen_categories
    notes = "".join(f"<li>{escape(n)}</li>" for n in result.notes)
    if result.fallback_reason:
        notes += f"<li>Evidently failed ({escape(result.fallback_reason)}); the native engine answered</li>"
    window = f"{result.window_start.isoformat() if result.window_start else '?'} to " \
             f"{result.window_end.isoformat() if result.window_end else '?'}"
    name, version = escape(result.model_name), escape(result.model_version)
    table = f"<table><tr>{_HEADER}</tr>{rows}</table>" if rows else ""
    unseen_line = (f"Rows with a category unseen in training: {unseen.rows_with_unseen} "
                   f"({_fmt(unseen.rate)}).")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {name} v{version}</title>
<style>{_STYLE}</style></head><body>
<h1>Drift report</h1>
<p>Model <b>{name}</b> version <b>{version}</b>; engine {escape(result.engine)};
window {escape(window)}; reference rows {result.reference_rows}; current rows {result.current_rows}
(of {result.rows_in_window} in the window).</p>
<p class="verdict">{escape(verdict_line)}</p>
{table}
{pred_line}
{confidence_line}
{importance_table}
<p>{unseen_line}</p>
{f'<ul>{notes}</ul>' if notes else ''}
</body></html>
"""
