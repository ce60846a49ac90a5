"""The verdict map and the GPU projection as Markdown tables, and a ratio as text."""
from __future__ import annotations

from benchmarks.analyse.projection import PCIE_BYTES_PER_S, significant
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
    inflation = rows[0]["inflation"]
    lines = ["Projection, not measurement. Each side's host time per step is its Python outside the runtime "
             "call in the profiled samples of the row, in every repeat (ResNet50 on this CPU, cProfile's own time "
             f"taken out; profiling slowed the first repeat's x{inflation['fast']:.1f} / x{inflation['slow']:.1f}, "
             "and what else it adds keeps the host time an upper bound); "
             "the GPU's time for a batch is the published ResNet50 rate whatever the API; a Session.run adds the "
             "two (it returns when its fetches are back), Keras 3's fit overlaps them (its callbacks are dispatched "
             "asynchronously), and a feed_dict loop adds the batch's copy at "
             f"{PCIE_BYTES_PER_S / 1e9:.0f} GB/s. The ratio is the geometric mean over the repeats with its 95% t "
             "interval; figures to 2 significant digits.", ""]
    return lines + table(("GPU (published ResNet50 images/s)", "batch", "row", "modes", "host ms (median)", "copy ms",
                          "GPU ms", "combined as", "projected ratio [95%]"),
                         [(r["gpu"], r["batch"], r["scenario"], f"{r['fast']} / {r['slow']}",
                           f"{significant(r['host_fast_ms'])} / {significant(r['host_slow_ms'])}",
                           significant(r["copy_ms"]), significant(r["device_ms"]), r["combine"],
                           _projected_ratio(r)) for r in rows])


def _projected_ratio(r: dict) -> str:
    if r["lo"] is None:
        return f"{significant(r['ratio'])}x [n/a: {r['repeats']} repeat]"
    return f"{significant(r['ratio'])}x [{significant(r['lo'])}, {significant(r['hi'])}]"


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
    """A row's parts, TF1 side / Keras side in ms per profiled step: every part that holds at
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
            threads = acc.get("threads") or {}
            seen = "; runtime threads that ran work (inter-op / intra-op): " + ", ".join(
                f"{threads[side]['inter_op']} / {threads[side]['intra_op']}" for side in ("fast", "slow")) \
                if threads else ""
            out.append(f"{number}. {r['fast']} / {r['slow']}, {r['scenario']}: walls {acc['fast_wall_ms']:,.2f} / "
                       f"{acc['slow_wall_ms']:,.2f} ms over {acc['samples']} samples; {accounting_text(acc)}{seen}")
    return out
