"""Markdown tables and the one phrase that names a machine, as the report, the verdict map, the
parity section and `compare` write them."""
from __future__ import annotations

from collections.abc import Iterable, Sequence


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Lines of a Markdown table: the header, its rule, one line per row of cells."""
    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(cell) for cell in cells) + " |"
    return [line(header), "|" + "---|" * len(header)] + [line(row) for row in rows]


def machine_text(machine: dict) -> str:
    """A results file's `machine` record as one phrase: "<CPU model>, <n> CPUs, <memory> GiB,
    CPU flags <flags>", the flags being the vector and matrix extensions that set these models'
    speed on a CPU (AVX2, AVX-512, AVX512_BF16, AMX); what was not recorded is left out."""
    parts = [str(machine.get("cpu_model") or machine.get("processor") or "CPU not recorded")]
    if machine.get("cpu_count"):
        parts.append(f"{machine['cpu_count']} CPUs")
    if machine.get("memory_gib"):
        parts.append(f"{machine['memory_gib']} GiB")
    if "cpu_flags_of_note" in machine:
        parts.append("CPU flags " + (" ".join(machine["cpu_flags_of_note"]) or "(none of AVX2, AVX-512, AMX, FMA)"))
    return ", ".join(parts)
