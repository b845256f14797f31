"""rnnlab.diagrams: the unrolled graph has exactly the nodes and arrows of the recurrence.

The reference is the recurrence itself, enumerated by hand below for small cases: which nodes a
column has and which arrows join them. The drawing is checked through its artists: every node is
a text at its position, every arrow starts and ends at the centres of the two nodes it joins,
and every weight label sits next to its own arrow.
"""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

from rnnlab.diagrams import draw_unrolled, unrolled_graph  # noqa: E402

W_HH, W_IH, W_HO = "$W_{hh}$", "$W_{ih}$", "$W_{ho}$"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def expected_edges(steps, many_to_one):
    """Arrows of the recurrence, written out from its equations (labels as TeX strings)."""
    edges, previous, last = set(), "$h_0$", len(steps) - 1
    for i, step in enumerate(steps):
        if step is None:
            edges.add((previous, r"$\cdots$", W_HH))
            previous = r"$\cdots$"
            continue
        h, x = f"$h_{{{step}}}$", f"$x_{{{step}}}$"
        edges |= {(previous, h, W_HH), (x, h, W_IH)}
        if not many_to_one or i == last:
            y, loss = f"$\\hat y_{{{step}}}$", f"$L_{{{step}}}$"
            edges |= {(h, y, W_HO), (y, loss, None)}
        previous = h
    return edges


def drawn(ax):
    """(node texts by position, arrows as (start, end), label texts) read off the artists."""
    arrows = [a for a in ax.texts if isinstance(a, Annotation)]
    texts = [t for t in ax.texts if not isinstance(t, Annotation)]
    nodes = {t.get_position(): t.get_text() for t in texts if t.get_text() not in
             (W_HH, W_IH, W_HO)}
    labels = [t for t in texts if t.get_text() in (W_HH, W_IH, W_HO)]
    return nodes, [(a.xyann, a.xy) for a in arrows], labels


@pytest.mark.parametrize("many_to_one", [False, True])
@pytest.mark.parametrize("steps", [("1", "2", "3", None, "T"), ("1", None, "T"), ("1",)])
def test_drawn_arrows_are_the_recurrences_and_join_node_centres(steps, many_to_one):
    fig, ax = draw_unrolled(steps=steps, many_to_one=many_to_one)
    nodes, arrows, labels = drawn(ax)
    arrow_labels = {}
    for start, end in arrows:
        assert start in nodes and end in nodes, (start, end)   # from centre to centre
    for label in labels:                                      # each label beside one arrow
        mx, my = label.get_position()
        nearest = min(arrows, key=lambda a: math.dist((mx, my), ((a[0][0] + a[1][0]) / 2,
                                                                  (a[0][1] + a[1][1]) / 2)))
        assert nearest not in arrow_labels, f"two labels next to {nearest}"
        arrow_labels[nearest] = label.get_text()
    found = {(nodes[s], nodes[e], arrow_labels.get((s, e))) for s, e in arrows}
    assert len(arrows) == len(found)                          # no arrow drawn twice
    assert found == expected_edges(steps, many_to_one)


def test_many_to_many_has_an_output_and_loss_per_step_many_to_one_only_at_the_end():
    _, many = draw_unrolled(steps=("1", "2", "T"))
    _, one = draw_unrolled(steps=("1", "2", "T"), many_to_one=True)
    losses = [sorted(t for t in drawn(ax)[0].values() if t.startswith("$L_"))
              for ax in (many, one)]
    assert losses == [["$L_{1}$", "$L_{2}$", "$L_{T}$"], ["$L_{T}$"]]


def test_graph_lists_inputs_and_states_in_columns_left_to_right():
    nodes, edges = unrolled_graph(("1", None, "T"))
    assert [n.name for n in nodes.values() if n.kind in ("initial", "state", "ellipsis")] \
        == ["h_0", "h_1", "dots_2", "h_T"]
    xs = [nodes[name].x for name in ("h_0", "h_1", "dots_2", "h_T")]
    assert xs == sorted(xs) and len(set(xs)) == 4
    assert nodes["x_1"].x == nodes["h_1"].x and nodes["x_1"].y < nodes["h_1"].y
    assert ("dots_2", "h_T", "$W_{hh}$") in edges


def test_drawing_fits_its_axes_and_warns_nothing():
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    draw_unrolled(ax, steps=("1", "2", None, "T"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.canvas.draw()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for x, y in drawn(ax)[0]:
        assert x0 < x < x1 and y0 < y < y1
    assert not ax.axison


@pytest.mark.parametrize("steps, error", [
    ("123", TypeError), (("1", 2), TypeError), ((), ValueError), (("1", None), ValueError),
    (("1", None, None, "T"), ValueError), (("1", "1"), ValueError), (("0", "1"), ValueError)])
def test_bad_steps_are_refused_with_the_argument_named(steps, error):
    with pytest.raises(error, match="steps: expected"):
        unrolled_graph(steps)


def test_bad_axes_and_flags_are_refused():
    with pytest.raises(TypeError, match="ax: expected"):
        draw_unrolled("not an axes")
    with pytest.raises(TypeError, match="many_to_one: expected"):
        unrolled_graph(("1",), many_to_one=1)
    with pytest.raises(ValueError, match="fontsize: expected"):
        draw_unrolled(fontsize=0)
    with pytest.raises(TypeError, match="^fontsize: expected a real number, got str$"):
        draw_unrolled(fontsize="10")
