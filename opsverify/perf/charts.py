"""Report fragments (self-contained HTML: no script, no external resource)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from opsverify.perf.runner import LoadResult
from opsverify.perf.stats import TABLE_PERCENTILES, HistoryPoint

# Report fragments (self-contained HTML: no script, no external resource)


def stats_table_html(result: LoadResult) -> str:
    heads = [
        "request",
        "count",
        "failures",
        "5xx",
        "avg ms",
        "med ms",
        *[f"p{p:g} ms" for p in TABLE_PERCENTILES],
        "max ms",
        "req/s",
    ]
    rows = []
    for stats in [*result.endpoints.values(), result.total]:
        cells = [
            stats.name,
            str(stats.count),
            f"{stats.failures} ({stats.fail_ratio:.2%})",
            str(stats.count_5xx),
            f"{stats.avg_ms:.0f}",
            f"{stats.median_ms:.0f}",
            *[f"{stats.percentile_ms(p):.0f}" for p in TABLE_PERCENTILES],
            f"{stats.max_ms:.0f}",
            f"{stats.rps:.1f}",
        ]
        weight = " style='font-weight:bold'" if stats.name == "total" else ""
        rows.append(f"<tr{weight}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    return (
        "<table class='ops-perf' style='border-collapse:collapse' border='1' cellpadding='3'>"
        f"<tr>{head}</tr>{''.join(rows)}</table>"
    )


def history_svg(history: Sequence[HistoryPoint], width: int = 640, height: int = 220) -> str:
    """p50/p95 (left axis, ms) and req/s (right axis) over time, as an inline SVG."""
    if len(history) < 2:
        return "<p>(too few stats-history points for a chart)</p>"
    t0 = history[0].t_s
    xs = [p.t_s - t0 for p in history]
    span = max(xs[-1], 1.0)
    lat_max = max([p.p95_ms or 0.0 for p in history] + [p.p50_ms or 0.0 for p in history] + [1.0])
    rps_max = max([p.rps for p in history] + [1.0])
    left, right, top, bottom = 50, width - 50, 15, height - 30

    def x(t: float) -> float:
        return left + (right - left) * t / span

    def y(v: float, vmax: float) -> float:
        return bottom - (bottom - top) * v / vmax

    def line(values: list[float | None], vmax: float, colour: str, dash: str = "") -> str:
        pts = " ".join(
            f"{x(t):.1f},{y(v, vmax):.1f}" for t, v in zip(xs, values, strict=True) if v is not None
        )
        extra = f" stroke-dasharray='{dash}'" if dash else ""
        return f"<polyline fill='none' stroke='{colour}' stroke-width='2'{extra} points='{pts}'/>"

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
        "aria-label='locust p50/p95 latency and requests per second over time' style='font:11px sans-serif'>",
        f"<rect x='{left}' y='{top}' width='{right - left}' height='{bottom - top}' "
        "fill='none' stroke='#ccc'/>",
        line([p.p50_ms for p in history], lat_max, "#1f77b4"),
        line([p.p95_ms for p in history], lat_max, "#d62728"),
        line([p.rps for p in history], rps_max, "#2ca02c", "4 3"),
        f"<text x='{left - 4}' y='{top + 8}' text-anchor='end'>{lat_max:.0f}</text>",
        f"<text x='{left - 4}' y='{bottom}' text-anchor='end'>0 ms</text>",
        f"<text x='{right + 4}' y='{top + 8}'>{rps_max:.0f}</text>",
        f"<text x='{right + 4}' y='{bottom}'>0 req/s</text>",
        f"<text x='{left}' y='{height - 8}'>0 s</text>",
        f"<text x='{right}' y='{height - 8}' text-anchor='end'>{span:.0f} s</text>",
        f"<text x='{left + 60}' y='{height - 8}' fill='#1f77b4'>p50</text>",
        f"<text x='{left + 90}' y='{height - 8}' fill='#d62728'>p95</text>",
        f"<text x='{left + 120}' y='{height - 8}' fill='#2ca02c'>req/s (right axis, dashed)</text>",
        "</svg>",
    ]
    return "".join(parts)


def summary_fragment(result: LoadResult, title: str = "Performance (locust)") -> str:
    note = (
        "Percentiles from locust's histogram (response times bucketed to ~2 significant digits); "
        "chart: 10 s sliding window from locust's stats history."
    )
    aborted = f"<p><b>Stopped early:</b> {html.escape(result.aborted)}</p>" if result.aborted else ""
    return (
        f"<h2>{html.escape(title)}</h2><p>{html.escape(result.describe())}</p>{aborted}"
        f"{history_svg(result.history)}{stats_table_html(result)}<p><small>{html.escape(note)}</small></p>"
    )
