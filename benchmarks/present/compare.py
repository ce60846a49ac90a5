"""Two results files side by side (e.g. this CPU and a user's GPU, or before/after a change)."""
from __future__ import annotations

from benchmarks.analyse.summary import load_results
from benchmarks.present.markdown import machine_text, table
from benchmarks.present.verdict import ratio_text


def compare(path_a: str, path_b: str) -> str:
    """A Markdown table of every configuration in either file: images/s in A and B (median over
    the timed steps of every repeat, with its IQR), B/A of the medians, then the ratios against
    Keras fit in each."""
    a, b = load_results(path_a), load_results(path_b)
    ca, cb = a["summary"]["configs"], b["summary"]["configs"]
    name_a = f"A ({a.get('machine', {}).get('cpu_model', path_a)})"
    name_b = f"B ({b.get('machine', {}).get('cpu_model', path_b)})"
    rates = []
    for key in sorted(set(ca) | set(cb)):
        ra, rb = (None if c.get(key) is None or not c[key].measured else c[key].throughput for c in (ca, cb))
        ratio = f"{rb['median'] / ra['median']:.2f}" if ra and rb else "n/a"
        rates.append((key, _rate(ra), _rate(rb), ratio))
    ratios_a = {(r["mode"], r["group"]): r for r in a["summary"]["ratios"]}
    ratios_b = {(r["mode"], r["group"]): r for r in b["summary"]["ratios"]}
    ratios = [(f"{mode} in {group}", _ratio(ratios_a.get((mode, group))), _ratio(ratios_b.get((mode, group))))
              for mode, group in sorted(set(ratios_a) | set(ratios_b))]
    lines = [f"A: {path_a} (commit {a.get('git_commit')}; {machine_text(a.get('machine', {}))})", "",
             f"B: {path_b} (commit {b.get('git_commit')}; {machine_text(b.get('machine', {}))})", ""]
    lines += table(("configuration", f"{name_a} images/s (IQR)", f"{name_b} images/s (IQR)", "B / A"), rates)
    lines += [""] + table(("mode vs the Keras baseline in", "A ratio [95%]", "B ratio [95%]"), ratios)
    return "\n".join(lines)


def _rate(throughput: dict | None) -> str:
    """images/s: the median and its IQR."""
    return "n/a" if throughput is None else f"{throughput['median']:,.1f} (IQR {throughput['iqr']:,.1f})"


def _ratio(r: dict | None) -> str:
    return "n/a" if r is None else ratio_text(r)
