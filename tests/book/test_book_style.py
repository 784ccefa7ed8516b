"""Tests of the shared book helpers: tdcore.book.style (quick mode, style) and tdcore.book.explorer."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from tdcore.book import explorers as _explorer  # noqa: E402
from tdcore.book import style as _style  # noqa: E402
from tdcore.book import tables  # noqa: E402


@pytest.mark.parametrize("value, expected", [(None, False), ("", False), ("0", False), (" 0 ", False),
                                             ("1", True), ("yes", True), ("true", True)])
def test_quick(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("TDCORE_QUICK", raising=False)
    else:
        monkeypatch.setenv("TDCORE_QUICK", value)
    assert _style.quick() is expected


def test_style_and_palette():
    _style.use_book_style()
    assert matplotlib.rcParams["axes.grid"] is True
    assert _style.method_color("algorithm1") == _style.PALETTE["algorithm1"]
    assert _style.method_color("no-such-method") == _style.PALETTE["reference"]


def _plot(ax, d=10, order=3, kind="line", scale=1.0):
    ax.plot(range(d), [scale * k**order for k in range(d)], label=kind)
    _plot.calls.append(dict(d=d, order=order, kind=kind, scale=scale))


_plot.calls = []


def test_explorer_defaults_come_from_signature_or_spec():
    _plot.calls.clear()
    ex = _explorer.explorer(_plot, d=(2, 50), order=(1, 5, 1, 2), kind=["bar", "line"], scale=0.5,
                        display=False)
    assert ex.values == {"d": 10, "order": 2, "kind": "line", "scale": 0.5}
    assert _plot.calls[-1] == ex.values
    assert ex.controls == {}  # no live kernel in pytest
    assert isinstance(ex.figure, matplotlib.figure.Figure)
    assert not plt.fignum_exists(ex.figure.number)  # closed: not shown twice inline


def test_explorer_render_updates_values():
    ex = _explorer.explorer(_plot, d=(2, 50), display=False)
    fig = ex.render(d=20)
    assert ex.values["d"] == 20 and ex.figure is fig
    assert len(fig.axes[0].get_lines()[0].get_xdata()) == 20


def test_explorer_float_slider_and_min_default():
    def plot(ax, alpha):
        ax.plot([0, 1], [0, alpha])

    ex = _explorer.explorer(plot, alpha=(0.5, 2.0), display=False)
    assert ex.values == {"alpha": 0.5}


def test_explorer_static_display_without_kernel(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append((obj, kw)))
    ex = _explorer.explorer(_plot, d=(2, 50))
    # outside a Jupyter kernel: exactly the static figure, no controls
    assert len(shown) == 1 and shown[0][0] is ex.figure and shown[0][1] == {"display_id": True}
    assert ex._ipython_display_() is None


def test_controls_bundle_has_widget_and_static_note():
    ipywidgets = pytest.importorskip("ipywidgets")
    controls = _explorer._build_controls({
        "d": ("int", {"min": 2, "max": 9, "step": 1, "value": 3}),
        "alpha": ("float", {"min": 0.0, "max": 1.0, "step": 0.1, "value": 0.5}),
        "kind": ("choice", {"options": ["a", "b"], "value": "b"}),
        "fixed": ("fixed", {"value": 1}),
    })
    assert set(controls) == {"d", "alpha", "kind"}
    assert isinstance(controls["d"], ipywidgets.IntSlider) and controls["d"].value == 3
    assert isinstance(controls["alpha"], ipywidgets.FloatSlider)
    assert controls["kind"].value == "b"
    bundle = _explorer._Controls(ipywidgets.HBox(list(controls.values())), list(controls))._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "live" in bundle["text/html"] and "d, alpha, kind" in bundle["text/plain"]


@pytest.mark.parametrize("kwargs, exc", [
    (dict(d=(5, 2)), ValueError),
    (dict(d=(2, 5, 0)), ValueError),
    (dict(d=(2, 5, 1, 9)), ValueError),
    (dict(kind=[]), ValueError),
    (dict(nope=(1, 2)), TypeError),
])
def test_explorer_rejects_bad_specs(kwargs, exc):
    with pytest.raises(exc):
        _explorer.explorer(_plot, display=False, **kwargs)


def test_explorer_needs_ax_parameter():
    with pytest.raises(TypeError):
        _explorer.explorer(lambda d=3: None, d=(1, 4), display=False)
    with pytest.raises(TypeError):
        _explorer.explorer(42, display=False)


def test_all_is_complete():
    for mod in (_style, _explorer, tables):
        for name in mod.__all__:
            assert hasattr(mod, name), name


def test_new_ax_is_the_one_figure_convention():
    ax = _style.new_ax()
    assert ax is _style.new_ax(ax)
    plt.close(ax.figure)


def test_markdown_table_text():
    text = tables.markdown_text([{"a": 1, "b": 0.5}], [("a", "A", "d"), ("b", "B", lambda v: f"{v:.1%}")])
    assert text.splitlines() == ["| A | B |", "| ---: | ---: |", "| 1 | 50.0% |"]
