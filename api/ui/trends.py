"""The KPI page's weekly trend charts as inline SVG geometry (no JavaScript): the first-pass,
fill and on-time rates as lines on one 0-100 % chart, and the orders received as bars, one
point or bar per week of `db.kpis.weekly_trends`."""

from __future__ import annotations

from typing import Any

WIDTH, HEIGHT = 400, 180
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 16, 24
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
MAX_X_LABELS = 6
# Told apart by colour and by dash, so they read in grey and for colour-blind eyes too.
SERIES = [
    ("first_pass_rate", "first-pass", "#1d5fd1", ""),
    ("fill_rate", "fill", "#1f7a3a", "6 3"),
    ("on_time_delivery_rate", "on-time", "#8a5a00", "2 3"),
]


def _x(i: int, n: int) -> float:
    return round(LEFT + (i + 0.5) * PLOT_W / n, 1)


def _y(fraction: float) -> float:
    return round(TOP + PLOT_H * (1 - fraction), 1)


def _x_labels(weeks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    n = len(weeks)
    step = max(1, -(-n // MAX_X_LABELS))
    return [
        {"x": _x(i, n), "text": w["week"].strftime("%d %b")}
        for i, w in enumerate(weeks)
        if i % step == 0
    ]


def _segments(values: list[float | None], n: int) -> list[str]:
    """Polyline point lists, broken where a week has no value (no orders to rate)."""
    out: list[str] = []
    run: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if run:
                out.append(" ".join(run))
            run = []
        else:
            run.append(f"{_x(i, n)},{_y(v)}")
    if run:
        out.append(" ".join(run))
    return out


def rate_chart(weeks: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(weeks)
    lines = []
    for key, label, colour, dash in SERIES:
        values = [w[key] for w in weeks]
        points = [
            {"x": _x(i, n), "y": _y(v), "value": v, "week": weeks[i]["week"]}
            for i, v in enumerate(values)
            if v is not None
        ]
        latest = points[-1]["value"] if points else None
        lines.append(
            {
                "label": label,
                "colour": colour,
                "dash": dash,
                "segments": _segments(values, n),
                "points": points,
                "latest": latest,
            }
        )
    grid = [{"y": _y(f), "text": f"{int(f * 100)}%"} for f in (0, 0.5, 1)]
    return {"lines": lines, "grid": grid, "x_labels": _x_labels(weeks), **_frame()}


def orders_chart(weeks: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(weeks)
    top = max((w["orders"] for w in weeks), default=0) or 1
    slot = PLOT_W / n
    bars = [
        {
            "x": round(_x(i, n) - slot * 0.35, 1),
            "y": _y(w["orders"] / top),
            "width": round(slot * 0.7, 1),
            "height": round(PLOT_H * w["orders"] / top, 1),
            "orders": w["orders"],
            "week": w["week"],
        }
        for i, w in enumerate(weeks)
    ]
    grid = [{"y": _y(f), "text": str(round(top * f))} for f in (0, 0.5, 1)]
    return {
        "bars": bars,
        "grid": grid,
        "x_labels": _x_labels(weeks),
        "show_values": n <= 16,
        **_frame(),
    }


def _frame() -> dict[str, Any]:
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT}


def trend_charts(weeks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Both charts' geometry, or None when the window has no orders."""
    if not weeks:
        return None
    return {"weeks": weeks, "rates": rate_chart(weeks), "orders": orders_chart(weeks)}
