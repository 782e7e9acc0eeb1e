"""The table of medians (with ipkernel / best peer) and the JSON file."""
import json
import statistics
from pathlib import Path

from bench.systems import VARIANTS
from bench.workloads import HIGHER, LOWER, Metric

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


def _versus(cells, peers, better):
    """``(best peer, ipkernel / its median, ipkernel leads)`` over ``peers``
    (None where either side has no median)."""
    found = {n: cells[n]["median"] for n in peers if cells[n]["median"] is not None}
    if not found:
        return None, None, None
    best = (min if better == LOWER else max)(found, key=found.get)
    ours = cells.get(REFERENCE, {}).get("median")
    if ours is None or not found[best]:
        return best, None, None
    ratio = ours / found[best]
    return best, ratio, (ratio <= 1 if better == LOWER else ratio >= 1)


def summarize(metrics, results, systems, encrypted=()):
    """One dict per metric: its description, per-system median / samples /
    errors, the best peer and ``ratio`` = ipkernel / best peer (None if
    either is missing) and ``leads`` (whether ipkernel is at least as good).

    The peers named in ``encrypted`` (those configured to encrypt) are left
    out of that comparison and get their own: ``best_encrypted_peer``,
    ``ratio_encrypted`` and ``ipkernel_leads_encrypted``.
    """
    plain = _peers(systems, encrypted, False)
    secure = _peers(systems, encrypted, True)
    variants = [n for n in systems if n in VARIANTS]
    rows = []
    for metric in metrics:
        cells = {}
        for name in systems:
            cell = results.get(metric.key, {}).get(name, {"samples": [], "errors": []})
            cells[name] = {"median": median(cell["samples"]), "samples": list(cell["samples"]),
                           "errors": list(cell["errors"])}
        best, ratio, leads = _versus(cells, plain, metric.better)
        row = {"key": metric.key, "label": metric.label, "unit": metric.unit,
               "better": metric.better, "systems": cells, "best_peer": best,
               "ratio": ratio, "ipkernel_leads": leads}
        if secure:
            best, ratio, leads = _versus(cells, secure, metric.better)
            row.update(best_encrypted_peer=best, ratio_encrypted=ratio,
                       ipkernel_leads_encrypted=leads)
        ours = cells.get(REFERENCE, {}).get("median")
        for name in variants:
            theirs = cells[name]["median"]
            row[f"ratio_{name}"] = theirs / ours if theirs is not None and ours else None
        rows.append(row)
    return rows


def _cell_text(cell):
    if cell["median"] is not None:
        return fmt(cell["median"]) + ("*" if cell["errors"] else "")
    if cell["errors"]:
        text = cell["errors"][0]
        text = text if text.startswith(("skipped", "timeout", "error")) else f"error: {text}"
        return text if len(text) <= 48 else text[:45] + "..."
    return "-"


def _ratio_cells(ratio, peer, leads):
    if ratio is None:
        return ["-", "-"]
    return [f"{ratio:.2f} (vs {peer})", "yes" if leads else "no"]


def _peers(systems, encrypted, secure):
    return [n for n in systems if n != REFERENCE and n not in VARIANTS
            and (n in encrypted) == secure]


def table(rows, systems, encrypted=()):
    """The rows as an aligned text table (one line per metric); with
    ``encrypted`` peers, a second pair of ratio columns against them; with
    a variant of ipkernel (``ipkernel-watched``), its median over ipkernel's."""
    plain = _peers(systems, encrypted, False)
    secure = _peers(systems, encrypted, True)
    variants = [n for n in systems if n in VARIANTS]
    header = ["workload", "unit", "better"] + list(systems)
    if plain:
        header += ["ipkernel/best peer", "ipkernel leads"]
    if secure:
        header += ["ipkernel/best encrypted peer", "leads encrypted"]
    header += [f"{n}/ipkernel" for n in variants]
    lines = [header]
    for row in rows:
        line = [row["label"], row["unit"], row["better"]]
        line += [_cell_text(row["systems"][n]) for n in systems]
        if plain:
            line += _ratio_cells(row["ratio"], row["best_peer"], row["ipkernel_leads"])
        if secure:
            line += _ratio_cells(row.get("ratio_encrypted"), row.get("best_encrypted_peer"),
                                 row.get("ipkernel_leads_encrypted"))
        for name in variants:
            ratio = row.get(f"ratio_{name}")
            line.append("-" if ratio is None else f"{ratio:.3f}")
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


def legend(encrypted=()):
    """Lines explaining the table."""
    text = ("better: 'lower' (ms, s, MB of memory) or 'higher' (tasks/s, MB/s) is better.  "
            "ratio = ipkernel median / best peer median (lower is better for 'lower' rows, "
            f"higher for '{HIGHER}' rows).  * = some repetitions failed (see JSON).  "
            "one-by-one rows submit one call per task on every system, bulk rows one call "
            "for all.")
    if encrypted:
        text += (f"  Peers with encryption on ({', '.join(encrypted)}) are compared apart "
                 "from the peers' defaults (ipkernel encrypts between hosts by default).")
    return text


def write_json(path, meta, rows):
    """Write ``{"meta": meta, "results": rows}`` to ``path`` (pretty-printed)."""
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=2, default=str)
        f.write("\n")


def merge_runs(paths, path, systems, encrypted, meta):
    """Write to ``path`` the results of runs that each measured some of
    ``systems`` (their JSON files ``paths``), side by side as if measured in
    one run: each metric's samples per system, the best peer and the ratios
    made again.  ``meta`` goes with the first run's; returns False (writing
    nothing) when none of the files could be read."""
    metrics, results, first = {}, {}, None
    for part in paths:
        try:
            data = json.loads(Path(part).read_text())
        except (OSError, ValueError):
            continue
        first = first or data.get("meta", {})
        for row in data.get("results", []):
            metrics.setdefault(row["key"], Metric(row["key"], row["label"], row["unit"],
                                                  row["better"]))
            for name, cell in row.get("systems", {}).items():
                if cell.get("samples") or cell.get("errors"):
                    results.setdefault(row["key"], {})[name] = cell
    if first is None:
        return False
    rows = summarize(list(metrics.values()), results, systems, encrypted)
    write_json(path, dict(first, systems=list(systems), encrypted_peers=list(encrypted),
                          **meta), rows)
    return True


def scale_rows(paths):
    """``(rows, systems, encrypted)`` of the ``--scale`` runs' JSON files: the
    (a) row of each, labelled with its engine count (files that are missing
    or unreadable are left out)."""
    rows, systems, encrypted = [], [], []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        meta = data.get("meta", {})
        systems = systems or meta.get("systems", [])
        encrypted = encrypted or meta.get("encrypted_peers", [])
        rows += [dict(row, label=f"(a) execute('a=1') on all {meta.get('engines')} engines")
                 for row in data.get("results", []) if row.get("key") == "a.execute_all"]
    return rows, systems, encrypted
