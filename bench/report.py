"""The table of medians (with ipkernel / best peer) and the JSON file."""
import json
import statistics

from bench.workloads import HIGHER, LOWER

REFERENCE = "ipkernel"


def median(samples):
    """The median of ``samples``, None when empty."""
    return statistics.median(samples) if samples else None


def fmt(value):
    """A number with about three significant digits (thousands separated)."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def summarize(metrics, results, systems):
    """One dict per metric: its description, per-system median / samples /
    errors, the best peer and ``ratio`` = ipkernel / best peer (None if
    either is missing) and ``leads`` (whether ipkernel is at least as good)."""
    rows = []
    for metric in metrics:
        cells = {}
        for name in systems:
            cell = results.get(metric.key, {}).get(name, {"samples": [], "errors": []})
            cells[name] = {"median": median(cell["samples"]), "samples": list(cell["samples"]),
                           "errors": list(cell["errors"])}
        peers = {n: c["median"] for n, c in cells.items()
                 if n != REFERENCE and c["median"] is not None}
        best = None
        if peers:
            pick = min if metric.better == LOWER else max
            best = pick(peers, key=peers.get)
        ours = cells.get(REFERENCE, {}).get("median")
        ratio = ours / peers[best] if best and ours is not None and peers[best] else None
        leads = None
        if ratio is not None:
            leads = ratio <= 1 if metric.better == LOWER else ratio >= 1
        rows.append({"key": metric.key, "label": metric.label, "unit": metric.unit,
                     "better": metric.better, "systems": cells, "best_peer": best,
                     "ratio": ratio, "ipkernel_leads": leads})
    return rows


def _cell_text(cell):
    if cell["median"] is not None:
        return fmt(cell["median"]) + ("*" if cell["errors"] else "")
    if cell["errors"]:
        text = cell["errors"][0]
        text = text if text.startswith(("skipped", "timeout", "error")) else f"error: {text}"
        return text if len(text) <= 48 else text[:45] + "..."
    return "-"


def table(rows, systems):
    """The rows as an aligned text table (one line per metric)."""
    header = ["workload", "unit", "better"] + list(systems)
    if len(systems) > 1:
        header += ["ipkernel/best peer", "ipkernel leads"]
    lines = [header]
    for row in rows:
        line = [row["label"], row["unit"], row["better"]]
        line += [_cell_text(row["systems"][n]) for n in systems]
        if len(systems) > 1:
            if row["ratio"] is None:
                line += ["-", "-"]
            else:
                line += [f"{row['ratio']:.2f} (vs {row['best_peer']})",
                         "yes" if row["ipkernel_leads"] else "no"]
        lines.append(line)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        cells = [str(c).ljust(w) if i < 3 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def legend():
    """Lines explaining the table."""
    return ("better: 'lower' (ms, s, MB of memory) or 'higher' (tasks/s, MB/s) is better.  "
            "ratio = ipkernel median / best peer median (lower is better for 'lower' rows, "
            f"higher for '{HIGHER}' rows).  * = some repetitions failed (see JSON).")


def write_json(path, meta, rows):
    """Write ``{"meta": meta, "results": rows}`` to ``path`` (pretty-printed)."""
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=2, default=str)
        f.write("\n")
