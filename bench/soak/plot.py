"""The controller's RSS over time as a picture: a PNG with matplotlib when it
is installed, else an SVG written here (a polyline per system)."""
from xml.sax.saxutils import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
WIDTH, HEIGHT, MARGIN = 800, 400, 60


def write_plot(base, series, kills):
    """Plot ``series`` (``{label: [(seconds, bytes), ...]}``), marking the
    ``kills`` (``{label: [seconds, ...]}``); write ``base`` + ``.png`` or
    ``.svg`` and return that path."""
    try:
        import matplotlib
    except ImportError:
        return _svg(base.with_suffix(".svg"), series, kills)
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(10, 5))
    for colour, (label, points) in zip(COLOURS, series.items()):
        axes.plot([t for t, _ in points], [b / 2 ** 20 for _, b in points],
                  color=colour, label=label)
        for t in kills.get(label, ()):
            axes.axvline(t, color=colour, alpha=0.25, linewidth=0.8)
    axes.set_xlabel("seconds since start (vertical lines: engine kills)")
    axes.set_ylabel("RSS, MiB")
    axes.set_title("controller / scheduler memory during the soak")
    axes.legend()
    path = base.with_suffix(".png")
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def _svg(path, series, kills):
    points = [p for values in series.values() for p in values] or [(0, 0)]
    t_max = max(t for t, _ in points) or 1
    b_max = max(b for _, b in points) or 1
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN

    def x(t):
        return MARGIN + t / t_max * inner_w

    def y(b):
        return HEIGHT - MARGIN - b / b_max * inner_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{MARGIN}" y="30" font-size="16">controller / scheduler RSS '
             f'(top: {b_max / 2 ** 20:.0f} MiB; {t_max:.0f} s; thin lines: kills)</text>',
             f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" '
             f'y2="{HEIGHT - MARGIN}" stroke="black"/>',
             f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" '
             f'stroke="black"/>']
    for n, (colour, (label, values)) in enumerate(zip(COLOURS, series.items())):
        for t in kills.get(label, ()):
            parts.append(f'<line x1="{x(t):.1f}" y1="{MARGIN}" x2="{x(t):.1f}" '
                         f'y2="{HEIGHT - MARGIN}" stroke="{colour}" stroke-opacity="0.25"/>')
        line = " ".join(f"{x(t):.1f},{y(b):.1f}" for t, b in values)
        parts.append(f'<polyline fill="none" stroke="{colour}" points="{line}"/>')
        parts.append(f'<text x="{WIDTH - MARGIN - 150}" y="{MARGIN + 20 * (n + 1)}" '
                     f'fill="{colour}" font-size="14">{escape(label)}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")
    return path
