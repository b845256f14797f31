r"""Diagrams of the recurrence: the computational graph of an RNN unrolled over time.

For :math:`a_t = W_{hh} h_{t-1} + W_{ih} x_t + b`, :math:`h_t = \phi(a_t)`, read out by
:math:`\hat y_t = W_{ho} h_t` into a loss :math:`L_t`, the unrolled graph has one column per
step t: an input node :math:`x_t`, a state node :math:`h_t`, and (at every step for a
many-to-many network, at the last step only for a many-to-one network) an output
:math:`\hat y_t` and a loss :math:`L_t`. Its arrows are

* :math:`h_{t-1} \to h_t`, labelled :math:`W_{hh}` (the recurrence, starting at :math:`h_0`);
* :math:`x_t \to h_t`, labelled :math:`W_{ih}`;
* :math:`h_t \to \hat y_t`, labelled :math:`W_{ho}`, and :math:`\hat y_t \to L_t`.

A step given as ``None`` is drawn as an ellipsis on the state row (the steps left out), with a
:math:`W_{hh}` arrow into it and out of it.

* :func:`unrolled_graph` — the nodes (name, position, TeX label, kind) and arrows of that graph;
* :func:`draw_unrolled` — draws it on a matplotlib Axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from rnnlab.checks import check_bool, check_number
from rnnlab.plotting import figure_and_axes

__all__ = ["Node", "Edge", "unrolled_graph", "draw_unrolled"]

DEFAULT_STEPS = ("1", "2", "3", None, "T")

_SPACING = 1.6                    # horizontal distance between two steps (data units)
_ROWS = {"input": 0.0, "state": 1.2, "output": 2.4, "loss": 3.5}
_COLOURS = {"initial": "0.92", "input": "#dbe9f6", "state": "white", "output": "#fbe3d0",
            "loss": "#f6d0d0"}


class Node(NamedTuple):
    """A node of the diagram: its ``name`` (``"h_2"``), position, TeX ``label``, ``kind``.

    ``kind`` is one of ``"initial"``, ``"input"``, ``"state"``, ``"output"``, ``"loss"`` or
    ``"ellipsis"`` (the steps left out, drawn without a box).
    """

    name: str
    x: float
    y: float
    label: str
    kind: str


class Edge(NamedTuple):
    """An arrow from node ``source`` to node ``target`` (names), with a TeX ``label`` or None."""

    source: str
    target: str
    label: str | None


def _check_steps(steps) -> list[str | None]:
    if isinstance(steps, str) or not isinstance(steps, Sequence):
        raise TypeError(f"steps: expected a sequence of step labels (str or None), "
                        f"got {type(steps).__name__}")
    steps = list(steps)
    bad = [s for s in steps if s is not None and not isinstance(s, str)]
    if bad:
        raise TypeError(f"steps: expected str or None entries, got {bad[0]!r}")
    if not steps or steps[-1] is None:
        raise ValueError(f"steps: expected a non-empty sequence whose last entry is a label, "
                         f"got {steps!r}")
    if any(a is None and b is None for a, b in zip(steps, steps[1:])):
        raise ValueError(f"steps: expected no two ellipses (None) in a row, got {steps!r}")
    names = [s for s in steps if s is not None]
    if len(set(names)) != len(names) or "0" in names:
        raise ValueError(f"steps: expected distinct labels other than '0' (h_0 is the initial "
                         f"state), got {steps!r}")
    return steps


def unrolled_graph(steps: Sequence[str | None] = DEFAULT_STEPS, *,
                   many_to_one: bool = False) -> tuple[dict[str, Node], list[Edge]]:
    r"""The nodes and arrows of the unrolled graph for the columns ``steps``.

    ``steps``: one label per column after :math:`h_0` (``"1"``, ``"T"``…; TeX allowed), or
    None for an ellipsis standing for the steps left out; the last entry is a label.
    ``many_to_one``: outputs and losses at the last step only, instead of at every step.

    Returns ``(nodes, edges)``: ``nodes`` maps each name (``"h_0"``, ``"x_1"``, ``"h_1"``,
    ``"y_1"``, ``"L_1"``, ``"dots_3"`` for an ellipsis in column 3) to its :class:`Node`, in
    drawing order; ``edges`` lists the :class:`Edge` arrows.
    """
    steps = _check_steps(steps)
    check_bool("many_to_one", many_to_one)
    nodes = {"h_0": Node("h_0", 0.0, _ROWS["state"], "$h_0$", "initial")}
    edges = []
    previous = "h_0"
    for column, step in enumerate(steps, start=1):
        x = _SPACING * column
        if step is None:
            name = f"dots_{column}"
            nodes[name] = Node(name, x, _ROWS["state"], r"$\cdots$", "ellipsis")
            edges.append(Edge(previous, name, "$W_{hh}$"))
            previous = name
            continue
        state, given = f"h_{step}", f"x_{step}"
        nodes[given] = Node(given, x, _ROWS["input"], f"$x_{{{step}}}$", "input")
        nodes[state] = Node(state, x, _ROWS["state"], f"$h_{{{step}}}$", "state")
        edges += [Edge(given, state, "$W_{ih}$"), Edge(previous, state, "$W_{hh}$")]
        previous = state
        if many_to_one and column != len(steps):
            continue
        output, loss = f"y_{step}", f"L_{step}"
        nodes[output] = Node(output, x, _ROWS["output"], f"$\\hat y_{{{step}}}$", "output")
        nodes[loss] = Node(loss, x, _ROWS["loss"], f"$L_{{{step}}}$", "loss")
        edges += [Edge(state, output, "$W_{ho}$"), Edge(output, loss, None)]
    return nodes, edges


def draw_unrolled(ax=None, *, steps: Sequence[str | None] = DEFAULT_STEPS,
                  many_to_one: bool = False, fontsize: float = 10.0):
    """Draw :func:`unrolled_graph` on ``ax`` (a new figure when None); return ``(fig, ax)``.

    Each node is a text in a rounded box coloured by kind (the ellipsis has no box), each edge an
    arrow between the two node centres, shortened so that it stops at the boxes, with its weight
    label beside it (to the right of vertical arrows, above horizontal ones). The axes are
    switched off; the caller sets the title.
    """
    fontsize = check_number("fontsize", fontsize, positive=True)
    fig, ax = figure_and_axes(ax)
    nodes, edges = unrolled_graph(steps, many_to_one=many_to_one)
    for node in nodes.values():
        if node.kind == "ellipsis":
            ax.text(node.x, node.y, node.label, ha="center", va="center",
                    fontsize=1.3 * fontsize)
            continue
        box = {"boxstyle": "round,pad=0.3", "fc": _COLOURS[node.kind], "ec": "0.2"}
        ax.text(node.x, node.y, node.label, ha="center", va="center", fontsize=fontsize,
                bbox=box)
    arrow = {"arrowstyle": "-|>", "color": "0.25", "lw": 1.0, "shrinkA": fontsize,
             "shrinkB": fontsize}
    for edge in edges:
        start, end = nodes[edge.source], nodes[edge.target]
        ax.annotate("", xy=(end.x, end.y), xytext=(start.x, start.y), arrowprops=arrow)
        if edge.label is None:
            continue
        vertical = start.x == end.x
        dx, dy = (0.22 * _SPACING, 0.0) if vertical else (0.0, 0.2)
        ax.text((start.x + end.x) / 2 + dx, (start.y + end.y) / 2 + dy, edge.label,
                fontsize=0.8 * fontsize, color="0.3", ha="center", va="center")
    right = max(node.x for node in nodes.values())
    ax.set_xlim(-0.5, right + 0.6)
    ax.set_ylim(-0.45, _ROWS["loss"] + 0.45)
    ax.set_axis_off()
    return fig, ax
