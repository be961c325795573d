"""Deliveries per hour as an inline SVG bar chart, drawn on the server (no script, no CDN: works offline)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString

from integration.ops.delivery_stats import Series

# Bottom to top in each bar; the colours of the admin's own success / warning / error messages.
LAYERS = (("succeeded", "#2e7d32"), ("retrying", "#e0a100"), ("failed", "#c62828"))
HEIGHT = 90
PLOT_TOP = 14  # room for the peak label
PLOT_BOTTOM = HEIGHT - 16  # room for the hour labels
LEFT = 4


def bar_chart(series: Series, *, bar_width: int, label_every: int, label_format: str, title: str) -> SafeString:
    """Stacked bars, one per hour (oldest left); each bar's tooltip gives its hour and counts.

    `label_every` hours get a label under the axis (in the current time zone, strftime `label_format`)."""
    width = LEFT * 2 + bar_width * series.hours
    peak = max(series.peak, 1)
    scale = (PLOT_BOTTOM - PLOT_TOP) / peak
    bars, labels = [], []
    for index in range(series.hours):
        start = timezone.localtime(series.start + timedelta(hours=index))
        counts = {name: getattr(series, name)[index] for name, _ in LAYERS}
        x = LEFT + index * bar_width
        y = PLOT_BOTTOM
        rects = []
        for name, colour in LAYERS:
            h = counts[name] * scale
            if counts[name]:
                rects.append((x, y - h, max(bar_width - 1, 1), h, colour))
            y -= h
        tip = f"{start:%Y-%m-%d %H}:00: " + ", ".join(f"{counts[n]} {n}" for n, _ in LAYERS)
        # Numbers and fixed colours only, apart from the escaped tooltip: plain formatting is safe and quick.
        bars.append(
            f"<g><title>{escape(tip)}</title>"
            f'<rect x="{x}" y="{PLOT_TOP}" width="{bar_width}" height="{PLOT_BOTTOM - PLOT_TOP}" fill="transparent"/>'
            + "".join(
                f'<rect x="{rx}" y="{ry:.1f}" width="{rw}" height="{rh:.1f}" fill="{c}"/>'
                for rx, ry, rw, rh, c in rects
            )
            + "</g>"
        )
        if start.hour % label_every == 0:
            labels.append((x, HEIGHT - 3, start.strftime(label_format)))
    totals = series.totals()
    summary = f"Deliveries, {title.lower()}: " + ", ".join(f"{totals[n]} {n}" for n, _ in LAYERS)
    return format_html(
        '<svg class="delivery-chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}" role="img" aria-label="{summary}" data-hours="{hours}" '
        'data-succeeded="{s}" data-retrying="{r}" data-failed="{f}">'
        '<line x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="#999" stroke-width="1"/>'
        '<text x="{left}" y="10" font-size="10" fill="#666">{title}: at most {peak} an hour</text>'
        "{bars}{labels}</svg>",
        w=width,
        h=HEIGHT,
        summary=summary,
        title=title,
        hours=series.hours,
        s=totals["succeeded"],
        r=totals["retrying"],
        f=totals["failed"],
        left=LEFT,
        right=width - LEFT,
        base=PLOT_BOTTOM,
        peak=series.peak,
        bars=SafeString("".join(bars)),
        labels=format_html_join("", '<text x="{}" y="{}" font-size="10" fill="#666">{}</text>', labels),
    )


def day_chart(series: Series) -> SafeString:
    return bar_chart(series, bar_width=18, label_every=6, label_format="%H:00", title="Last 24 hours")


def week_chart(series: Series) -> SafeString:
    return bar_chart(series, bar_width=3, label_every=24, label_format="%a %d", title="Last 7 days")
