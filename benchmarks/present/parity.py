"""The training parity record as a person reads it: the report's section and its figure."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.analyse.stats import tost_decision
from benchmarks.modes import Api
from benchmarks.present.markdown import machine_text
from plumbing.errors import UserError
from plumbing.figures import plt, save_figure

PARITY_JSON = "parity.json"
GRAPH, KERAS = Api.GRAPH.value, Api.KERAS.value  # the record's keys of the two sides
FINAL_METRICS = ("val_accuracy", "val_loss")


def _tost_line(metric: str, result: dict, finals: dict) -> str:
    graph, keras = np.asarray(finals[GRAPH][metric]), np.asarray(finals[KERAS][metric])
    head = (f"- final {metric}: graph {graph.mean():.4f} (sd {graph.std(ddof=1):.4f}), keras {keras.mean():.4f} "
            f"(sd {keras.std(ddof=1):.4f}); keras - graph = {result['difference']:+.4f}, "
            f"{1 - 2 * result['alpha']:.0%} interval [{result['lo']:+.4f}, {result['hi']:+.4f}], "
            f"margin +-{result['margin']:g}, TOST p = {result['p']:.3g}: ")
    if result["equivalent"]:
        return head + "**equivalent** within the margin."
    beyond = max(result["hi"] - result["margin"], -result["margin"] - result["lo"])
    return head + f"**not shown equivalent**: the interval reaches {beyond:.4f} beyond the margin."


def parity_markdown(record: dict) -> list[str]:
    """The parity section of a report, as markdown lines."""
    c, machine = record["config"], record["machine"]
    n = c["seeds"]
    lines = ["## Training parity: does Keras reach worse results?", "",
             f"Model `{c['model']}` on `{c['manifest']}` ({record['num_classes']} classes, "
             f"{record['samples']['train']} train samples per epoch, {record['samples']['val']} val), "
             f"{c['epochs']} epochs, batch {c['batch_size']}, "
             f"{c['optimizer']} lr {c['learning_rate']:g}; each run is `python -m graph_api train` (TF1 runtime) "
             f"or `python -m keras_api train` in its own process. Machine: {machine_text(machine)}.", "",
             "**Same start** (one initial weights file, the same batch order, dropout off): largest gap over "
             "the epochs, and the tolerance (losses: "
             f"{c['tolerance']:g} x ln({record['num_classes']}); accuracies: max({c['tolerance']:g}, 2 samples)).", "",
             "| curve | largest graph - keras gap | tolerance | holds |", "| --- | --- | --- | --- |"]
    for key, gap in record["same_start"]["gaps"].items():
        holds = "yes" if gap["holds"] else "**no**"
        lines.append(f"| {key} | {gap['max_gap']:.3g} | {gap['tolerance']:.3g} | {holds} |")
    lines += ["", f"**{n} independent seeds per API** (own initialisation, dropout masks, order), final epoch, "
              f"two one-sided Welch t-tests at alpha {c['alpha']:g}:", ""]
    lines += [_tost_line(m, record["seeds"]["tost"][m], record["seeds"]["final"]) for m in FINAL_METRICS]
    lines += ["", "![parity.png](parity.png)", ""]
    return lines


def load_parity(out_dir: str | Path) -> dict | None:
    """The parity record beside a report, or None when parity was not run there."""
    path = Path(out_dir) / PARITY_JSON
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable parity record ({err})") from None


def parity_curves(record: dict, path: Path) -> Path:
    """Same start: the four curves of both APIs per epoch. Seeds: every seed's final val accuracy
    and loss per API, the means, and the TOST interval of the difference against the margin."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    styles = {GRAPH: {"color": "tab:blue", "linestyle": "-"}, KERAS: {"color": "tab:orange", "linestyle": "--"}}
    for ax, keys in zip(axes[0], (("loss", "val_loss"), ("accuracy", "val_accuracy"))):
        for api, history in record["same_start"]["curves"].items():
            for key in keys:
                epochs = range(1, len(history[key]) + 1)
                ax.plot(epochs, history[key], marker="o" if key.startswith("val") else ".",
                        label=f"{api} {key}", **styles[api])
        ax.set_xlabel("epoch")
        ax.set_title(f"same start: {keys[0]}", fontsize=9)
        ax.legend(fontsize=7)
    for ax, metric in zip(axes[1], ("val_accuracy", "val_loss")):
        finals, result = record["seeds"]["final"], record["seeds"]["tost"][metric]
        for x, api in enumerate((GRAPH, KERAS)):
            values = finals[api][metric]
            ax.scatter([x] * len(values), values, color=styles[api]["color"], alpha=0.7)
            ax.hlines(sum(values) / len(values), x - 0.2, x + 0.2, color="black")
        ax.set_xticks([0, 1], [GRAPH, KERAS])
        ax.set_xlim(-0.5, 2.5)
        # the difference keras - graph and its interval, drawn on the graph mean's scale at x = 2
        base = sum(finals[GRAPH][metric]) / len(finals[GRAPH][metric])
        ax.errorbar([2], [base + result["difference"]], yerr=[[result["difference"] - result["lo"]],
                                                               [result["hi"] - result["difference"]]],
                    fmt="s", color="black", capsize=4, label="keras - graph, 90% interval")
        ax.axhspan(base - result["margin"], base + result["margin"], color="green", alpha=0.12,
                   label=f"margin +-{result['margin']:g}")
        ax.set_title(f"{len(finals[GRAPH][metric])} seeds: final {metric} "
                     f"({tost_decision(result)})", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)
