"""A verdict row's gap taken apart: both sides' profiled samples (`benchmarks.measure.accounting`)
part by part, the part that carries most of the gap, the residual, and whether the two sides
run the same kernels, read from their op-type histograms."""
from __future__ import annotations

from benchmarks.analyse.records import ConfigSummary
from benchmarks.parts import PART_LABELS, PROFILER

TOP_OP_SHARE = 0.9  # the op types that carry this share of a side's op time are its kernels
# The same computation on a resource variable (TF2, Keras) as on a reference variable (the TF1
# runtime): compared under the reference op's name. oneDNN's and Eigen's kernels (`_MklMatMul`
# against `MatMul`) stay apart: they are different code.
SAME_ON_RESOURCE_VARIABLES = {"AssignSubVariableOp": "AssignSub", "AssignAddVariableOp": "AssignAdd",
                              "AssignVariableOp": "Assign", "ResourceScatterSub": "ScatterSub",
                              "ResourceScatterAdd": "ScatterAdd", "VarHandleOp": "VariableV2"}


def _merged(op_types: dict[str, dict]) -> dict[str, dict]:
    """`op_types` with resource-variable ops under their reference-variable names."""
    out: dict[str, dict] = {}
    for name, value in op_types.items():
        entry = out.setdefault(SAME_ON_RESOURCE_VARIABLES.get(name, name), {"ms": 0.0, "count": 0.0})
        entry["ms"] += value["ms"]
        entry["count"] += value["count"]
    return out


def format_ms(x: float) -> str:
    """`x` ms, readable (0.9999 ms is 1.0 ms, not 1,000 us)."""
    return f"{x * 1000:,.0f} us" if abs(round(x * 1000)) < 1000 else f"{x:,.1f} ms"


def _signed(x: float) -> str:
    return ("+" if x >= 0 else "-") + format_ms(abs(x))


def top_op_types(op_types: dict[str, dict]) -> list[str]:
    """The op types that carry `TOP_OP_SHARE` of the op time, largest first."""
    total = sum(v["ms"] for v in op_types.values())
    out, covered = [], 0.0
    for name, value in sorted(op_types.items(), key=lambda kv: -kv[1]["ms"]):
        if total and covered >= TOP_OP_SHARE * total:
            break
        out.append(name)
        covered += value["ms"]
    return out


def kernels(fast: dict[str, dict], slow: dict[str, dict]) -> dict:
    """The two sides' op-type histograms compared: their top types, those only one side has, and
    the type whose op time differs most (ms per step, slow - fast); an op on a resource variable
    counts as its reference-variable twin (`SAME_ON_RESOURCE_VARIABLES`)."""
    fast, slow = _merged(fast), _merged(slow)
    top_fast, top_slow = top_op_types(fast), top_op_types(slow)
    names = set(fast) | set(slow)
    diff = {n: slow.get(n, {}).get("ms", 0.0) - fast.get(n, {}).get("ms", 0.0) for n in names}
    largest = max(diff, key=lambda n: abs(diff[n])) if diff else None
    return {"same": set(top_fast) == set(top_slow), "top_fast": top_fast, "top_slow": top_slow,
            "only_fast": sorted(set(top_fast) - set(slow)), "only_slow": sorted(set(top_slow) - set(fast)),
            "largest_difference": {"op_type": largest, "ms": diff[largest]} if largest else None}


def row_accounting(fast: ConfigSummary, slow: ConfigSummary) -> dict | None:
    """Both sides' parts (ms per step), the traced gap (slow - fast), the step's gap (the traced
    one less the profiler's own time: what a step differs by untraced) and the part carrying most
    of it, or None unless both sides were profiled. The profiler's own time is the measurement's,
    not the step's: it is never the part named, and shares are of the step's gap."""
    a, b = fast.accounting, slow.accounting
    if not a or not b:
        return None
    parts = [{"part": name, "label": label, "fast_ms": a["parts_ms"].get(name, 0.0),
              "slow_ms": b["parts_ms"].get(name, 0.0)} for name, label in PART_LABELS.items()]
    for part in parts:
        part["gap_ms"] = part["slow_ms"] - part["fast_ms"]
    gap = b["wall_ms"] - a["wall_ms"]
    by_name = {p["part"]: p["gap_ms"] for p in parts}
    step_gap = gap - by_name[PROFILER]
    named = sorted((p for p in parts if p["part"] not in ("residual", PROFILER)),
                   key=lambda p: -p["gap_ms"] * (1 if step_gap >= 0 else -1))
    residual = by_name["residual"]
    # the part that runs most against the gap: what lets the largest one carry more than all of it
    against = named[-1] if named[-1]["gap_ms"] * step_gap < 0 else None
    return {"fast_wall_ms": a["wall_ms"], "slow_wall_ms": b["wall_ms"], "gap_ms": gap, "parts": parts,
            "profiler_gap_ms": by_name[PROFILER], "step_gap_ms": step_gap,
            "largest": {**named[0], "share": named[0]["gap_ms"] / step_gap if step_gap else None},
            "second": named[1], "against": against, "residual_ms": residual,
            "residual_share": abs(residual / step_gap) if step_gap else None,
            "inflation": {"fast": a.get("inflation"), "slow": b.get("inflation")},
            "threads": {"fast": a["threads"], "slow": b["threads"]} if "threads" in a and "threads" in b else None,
            "samples": min(a["samples"], b["samples"]),
            "kernels": kernels(a["op_types"], b["op_types"])}


def kernel_sentence(k: dict) -> str:
    """What the op-type histograms say, as measured."""
    if k["same"]:
        top = len(k["top_fast"])
        text = (f"the same {top} op types carry" if top != 1 else "the same op type carries") + \
            f" {TOP_OP_SHARE:.0%} of both sides' op time"
    elif k["only_fast"] or k["only_slow"]:
        text = "different kernels: " + "; ".join(
            f"only the {side} side runs {', '.join(names[:3])}"
            for side, names in (("TF1", k["only_fast"]), ("Keras", k["only_slow"])) if names)
    else:  # every top type runs on both sides, but not among both sides' top types
        text = "the top op types differ: " + "; ".join(
            f"{', '.join(names[:3])} among the {side} side's only"
            for side, names in (("TF1", [t for t in k["top_fast"] if t not in k["top_slow"]]),
                                ("Keras", [t for t in k["top_slow"] if t not in k["top_fast"]])) if names)
    d = k["largest_difference"]
    if d and abs(d["ms"]) >= 0.001:
        text += f"; op time differs most in {d['op_type']} ({_signed(d['ms'])})"
    return text


def _covers_one(ratio: dict) -> bool:
    return ratio.get("lo") is not None and ratio.get("hi") is not None and ratio["lo"] <= 1 <= ratio["hi"]


def locates(acc: dict, ratio: dict | None) -> bool:
    """Whether the profiled gap can locate the timed one (`ratio`: {ratio, lo, hi} over repeats):
    the timed interval excludes 1 and the profiled steps, less the profiler's own time, differ in
    the same direction. Two sides the timed steps cannot tell apart differ in their profiled
    samples only by noise and by how much profiling slowed each."""
    if ratio is None:
        return True
    return not _covers_one(ratio) and (ratio["ratio"] - 1) * acc["step_gap_ms"] > 0


def _slowed(acc: dict) -> str:
    return ", ".join(f"x{v:.1f}" for v in (acc["inflation"]["fast"], acc["inflation"]["slow"]) if v)


def gap_sentence(acc: dict, fast_mode: str, slow_mode: str, ratio: dict | None = None) -> str:
    """The mechanism as measured: the traced gap, its largest parts, the residual, the kernels;
    with the timed `ratio` ({ratio, lo, hi}), only where the profiled gap can locate it (`locates`)."""
    second = acc["second"]
    profiled = (f"profiled, {fast_mode} {format_ms(acc['fast_wall_ms'])} vs {slow_mode} "
                f"{format_ms(acc['slow_wall_ms'])} per step")
    step = f"{_signed(acc['step_gap_ms'])} without the profiler's own time"
    if not locates(acc, ratio):
        if _covers_one(ratio):
            why = (f"the timed interval cannot tell the sides apart ({ratio['ratio']:.2f}x "
                   f"[{ratio['lo']:.2f}, {ratio['hi']:.2f}] covers 1), so the profiled difference ({step}) "
                   "locates none")
        else:
            why = (f"the profiled steps do not show the timed gap ({ratio['ratio']:.2f}x): their difference "
                   f"({step}) has the other sign, so no part of it is located")
        return f"{profiled} (profiling slowed them {_slowed(acc)}): {why}; {kernel_sentence(acc['kernels'])}"
    residual = f"{_signed(acc['residual_ms'])}" + (f" ({acc['residual_share']:.0%} of the rest)"
                                                    if acc["residual_share"] is not None else "")
    return (f"{profiled} (gap {_signed(acc['gap_ms'])}, of which the profiler's own time "
            f"{_signed(acc['profiler_gap_ms'])}; profiling slowed them {_slowed(acc)}): {_largest_text(acc)}, "
            f"then {second['label']} {_signed(second['gap_ms'])}; residual {residual}; "
            f"{kernel_sentence(acc['kernels'])}")


def _largest_text(acc: dict) -> str:
    """The part carrying most of the step's gap with its share; a share over 100% says which
    part runs the other way, as only such a part lets one part exceed the whole gap."""
    top, against = acc["largest"], acc.get("against")
    named = f"{top['label']} {_signed(top['gap_ms'])}"
    if top["share"] is None:
        return f"most of the rest is {named}"
    if top["share"] <= 1 or against is None:
        return f"most of the rest is {named} ({top['share']:.0%} of it)"
    return (f"{named} is more than all of the rest ({top['share']:.0%} of it: {against['label']} "
            f"{_signed(against['gap_ms'])} runs the other way)")
