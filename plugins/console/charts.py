"""Daily charts drawn on the server as inline SVG (no script, no external library)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape


def bar_chart(
    points: Sequence[tuple[str, int]],
    *,
    title: str,
    fmt: Callable[[int], str] = str,
    width: int = 480,
    height: int = 150,
) -> Markup:
    """A bar per (label, value), with a `<title>` tooltip each and the maximum marked.

    Sized by its viewBox, so it scales to the page width; colours come from the stylesheet
    (`.chart .bar`), so it follows the light or dark theme.
    """
    top, bottom, left = 18, 22, 4
    inner = height - top - bottom
    count = max(len(points), 1)
    slot = (width - left) / count
    peak = max((value for _, value in points), default=0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="peak" x="{left}" y="12">max {escape(fmt(peak))}</text>',
        f'<line class="axis" x1="{left}" y1="{top + inner}" x2="{width}" y2="{top + inner}"/>',
    ]
    for index, (label, value) in enumerate(points):
        bar = 0.0 if peak == 0 else inner * value / peak
        x = left + index * slot + slot * 0.15
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{top + inner - bar:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{max(bar, 0.0):.1f}">'
            f"<title>{escape(label)}: {escape(fmt(value))}</title></rect>"
        )
    if points:
        parts.append(
            f'<text class="label" x="{left}" y="{height - 6}">{escape(points[0][0])}</text>'
        )
        parts.append(
            f'<text class="label" x="{width}" y="{height - 6}" text-anchor="end">'
            f"{escape(points[-1][0])}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
