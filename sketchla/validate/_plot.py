"""Figures for the report: ``matplotlib.figure.Figure`` objects rendered by the Agg canvas.

No pyplot: no global backend state is touched, nothing opens a window, and figures are freed
when they go out of scope.
"""

from __future__ import annotations

from typing import Any


def figure(ncols: int = 1, nrows: int = 1, width: float = 5.2, height: float = 3.9) -> tuple:
    """``(fig, axes)`` with ``axes`` a flat list of ``nrows * ncols`` Axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def finish(
    ax: Any,
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    logx: bool = False,
    logy: bool = False,
    legend: bool = True,
) -> None:
    """Title, axis labels, log scales, grid and legend of one panel."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
