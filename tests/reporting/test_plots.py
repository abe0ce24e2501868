"""Scatter labels: points close together get labels that do not overlap."""

from domainkd.reporting import plots
from domainkd.reporting.plots import Point


def test_labels_of_coincident_points_do_not_overlap() -> None:
    import matplotlib

    with matplotlib.rc_context(plots.RC):
        figure = plots._figure(6.0, 3.6)
        axes = figure.add_subplot()
        points = [Point(name, 0.4, 0.0, "#333333") for name in ("base", "chain_of_thought", "rag")]
        for point in points:
            axes.scatter([point.x], [point.y])
        axes.set_xlim(0, 6)
        axes.set_ylim(-5, 45)
        plots._place_labels(figure, axes, points)
        renderer = figure.canvas.get_renderer()
        boxes = [text.get_window_extent(renderer) for text in axes.texts]
    assert [text.get_text() for text in axes.texts] == ["base", "chain_of_thought", "rag"]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
