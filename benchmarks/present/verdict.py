"""The verdict map and the GPU projection as Markdown tables, and a ratio as text."""
from __future__ import annotations

from benchmarks.config import CLAIMED_RATIO
from benchmarks.present.markdown import table


def ratio_text(r: dict) -> str:
    """"1.23x [1.10, 1.37]", or the ratio alone when one repeat gave no interval."""
    if r.get("lo") is None:
        return f"{r['ratio']:.2f}x [n/a]"
    return f"{r['ratio']:.2f}x [{r['lo']:.2f}, {r['hi']:.2f}]"


def map_markdown(rows: list[dict]) -> list[str]:
    return table(("regime", "scenario", "TF1 side / Keras side", "ratio [95%]", "a repeat's step", f"{CLAIMED_RATIO}x",
                  "mechanism (measured)"),
                 [(r["regime"], r["scenario"], f"{r['fast']} / {r['slow']}", ratio_text(r), r["timed"], r["claim"],
                   r["mechanism"]) for r in rows])


def projection_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["Projection, not measurement. Assumed: each mode's per-step cost on the host is what it is on this CPU "
             "(its trivial-model step at batch 1), the GPU's work per image is the published ResNet50 training rate "
             "whatever the API, and nothing else (input, transfers) is on the critical path.", ""]
    return lines + table(("GPU (published ResNet50 images/s)", "batch", "modes", "dispatch ms", "GPU compute ms",
                          "projected ratio"),
                         [(r["gpu"], r["batch"], f"{r['fast']} / {r['slow']}",
                           f"{r['dispatch_fast_ms']:.2f} / {r['dispatch_slow_ms']:.2f}", f"{r['compute_ms']:,.1f}",
                           f"{r['ratio']:.3f}x") for r in rows])


def control_lines(controls: list[dict]) -> list[str]:
    """Each A/A control as a sentence built from its measured fields."""
    lines = []
    for c in controls:
        if c["lo"] is None:
            verdict = "one repeat, no interval"
        else:
            verdict = "covers 1" if c["covers_one"] else \
                "does not cover 1: these intervals are too narrow for this machine"
        spread = "" if c["spread"] is None else f", per-repeat spread +-{c['spread']:.1%}"
        lines.append(f"A/A control: {c['key']} measured twice, in separate processes: {ratio_text(c)} "
                     f"({verdict}; {c['repeats']} repeats{spread})")
    return lines


def accounting_text(acc: dict, min_share: float = 0.02) -> str:
    """A row's parts, TF1 side / Keras side in ms per profiled sample: every part that holds at
    least `min_share` of either side's wall, then the residual."""
    walls = (acc["fast_wall_ms"], acc["slow_wall_ms"])
    shown = [p for p in acc["parts"] if p["part"] != "residual"
             and max(abs(p["fast_ms"]) / walls[0], abs(p["slow_ms"]) / walls[1]) >= min_share]
    residual = next(p for p in acc["parts"] if p["part"] == "residual")
    return ", ".join(f"{p['label']} {p['fast_ms']:,.2f} / {p['slow_ms']:,.2f}" for p in [*shown, residual])


def accounting_markdown(rows: list[dict]) -> list[str]:
    """One line per profiled row: its number in the map, both walls, the parts and the residual."""
    out = []
    for number, r in enumerate(rows, 1):
        acc = r.get("accounting")
        if acc:
            out.append(f"{number}. {r['fast']} / {r['slow']}, {r['scenario']}: walls {acc['fast_wall_ms']:,.2f} / "
                       f"{acc['slow_wall_ms']:,.2f} ms over {acc['samples']} samples; {accounting_text(acc)}")
    return out
