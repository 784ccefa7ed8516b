"""Interactive explorers: a static figure for the HTML book, sliders in a live kernel.

:func:`explorer` draws a figure for default parameter values (so the static
HTML page is never empty) and, in a live Jupyter kernel with ipywidgets
(Binder, Colab, Thebe, a local JupyterLab), adds sliders that redraw it.
The figure function follows the book's convention ``plot_fn(*, ax, **values)``.
"""

from __future__ import annotations

import inspect
import numbers

__all__ = ["explorer", "Explorer"]

_LIVE_NOTE = (
    "Interactive controls ({names}) appear here when this page runs in a live "
    "Jupyter kernel: use the launch buttons at the top of the page (Binder, Colab, "
    "Live Code) or run the notebook locally. The figure above shows the default values."
)


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _parse_spec(name, spec, default):
    """Turn one widget spec into ``(kind, options)``.

    ``kind`` is ``"int"``/``"float"`` (slider), ``"choice"`` (dropdown),
    ``"widget"`` (a ready ipywidgets widget) or ``"fixed"`` (no control).
    """
    if type(spec).__module__.startswith("ipywidgets"):
        return "widget", {"widget": spec, "value": spec.value}
    if isinstance(spec, tuple) and len(spec) in (2, 3, 4) and all(_is_number(v) for v in spec):
        lo, hi = spec[0], spec[1]
        if lo >= hi:
            raise ValueError(f"explorer: slider {name!r} needs min < max, got {spec}")
        is_int = all(isinstance(v, numbers.Integral) for v in spec)
        step = spec[2] if len(spec) >= 3 else (1 if is_int else (hi - lo) / 100)
        if step <= 0:
            raise ValueError(f"explorer: slider {name!r} needs a positive step, got {step}")
        if len(spec) == 4:
            value = spec[3]
        elif default is not inspect.Parameter.empty and _is_number(default):
            value = default
        else:
            value = lo
        if not lo <= value <= hi:
            raise ValueError(f"explorer: default {value} of {name!r} lies outside [{lo}, {hi}]")
        kind = "int" if is_int and isinstance(value, numbers.Integral) else "float"
        return kind, {"min": lo, "max": hi, "step": step, "value": value}
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"explorer: choice list for {name!r} is empty")
        value = default if default in spec else spec[0]
        return "choice", {"options": list(spec), "value": value}
    return "fixed", {"value": spec}


def _live_widgets_available() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython) with ipywidgets."""
    try:
        from IPython import get_ipython
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _Controls:
    """Display wrapper: the widget for a live frontend, a note for static HTML.

    The mime bundle holds the widget view (rendered by JupyterLab, Notebook,
    Colab and Thebe) next to an HTML/plain-text note.  The book's HTML build
    gives the widget-view type no priority (``nb_mime_priority_overrides`` in
    ``_config.yml``), so a static page shows the note instead of a dead slider.
    """

    def __init__(self, box, names):
        self.box = box
        self.note = _LIVE_NOTE.format(names=", ".join(names))

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = dict(self.box._repr_mimebundle_(include=include, exclude=exclude) or {})
        data["text/plain"] = self.note
        data["text/html"] = f'<p class="tdcore-explorer-note"><em>{self.note}</em></p>'
        return data


class Explorer:
    """Handle returned by :func:`explorer`.

    Attributes
    ----------
    values : dict
        The parameter values of the figure currently shown.
    figure : matplotlib.figure.Figure
        The figure currently shown (closed in pyplot's registry).
    controls : dict
        ``name -> ipywidgets widget`` (empty when no live kernel is present).
    """

    def __init__(self, plot_fn, values, controls, figsize):
        self.plot_fn = plot_fn
        self.values = dict(values)
        self.controls = dict(controls)
        self.figsize = figsize
        self.figure = None
        self._handle = None

    def render(self, **changes):
        """Redraw with some parameters changed; returns the new figure."""
        import matplotlib.pyplot as plt

        self.values.update(changes)
        fig, ax = plt.subplots(figsize=self.figsize)
        self.plot_fn(ax=ax, **self.values)
        plt.close(fig)  # keep the inline backend from showing it a second time
        self.figure = fig
        if self._handle is not None:
            self._handle.update(fig)
        return fig

    def _ipython_display_(self):
        # explorer() has already shown the figure and the controls; showing the
        # handle again (a cell ending in ``tdcore.explorer(...)``) adds nothing.
        return None

    def __repr__(self):
        return f"Explorer({getattr(self.plot_fn, '__name__', 'plot')}, values={self.values})"


def explorer(plot_fn, /, *, figsize=None, display=True, **widget_specs) -> Explorer:
    """Show a figure for default parameter values, plus live sliders when possible.

    Parameters
    ----------
    plot_fn : callable
        ``plot_fn(ax=ax, **values)`` draws on the matplotlib Axes ``ax``.
    figsize : tuple of float, optional
        Figure size; the book style's default when omitted.
    display : bool
        Show the figure (and controls) now.  ``False`` only builds the handle
        (used by tests and by code that composes its own layout).
    **widget_specs
        One entry per parameter of ``plot_fn``:

        * ``(min, max)``, ``(min, max, step)`` or ``(min, max, step, value)`` of
          numbers: a slider (integer slider when all are integers).  Without an
          explicit ``value`` the default of ``plot_fn``'s parameter is used when
          it has one, else ``min``;
        * a list: a dropdown over its items (default: ``plot_fn``'s default if
          listed, else the first item);
        * an ``ipywidgets`` widget: used as it is;
        * anything else: a fixed value passed through without a control.

    Returns
    -------
    Explorer
        Handle with the current ``values``, ``figure`` and ``controls``.

    Notes
    -----
    The static figure is displayed with a display id; moving a slider replaces
    it in place (``update_display``), so a live notebook shows one figure, not
    two.  In the book's static HTML the controls are replaced by a short note.

    Examples
    --------
    >>> def plot(ax, d=10, order=3):
    ...     ax.plot(range(d), [k ** order for k in range(d)])
    >>> ex = explorer(plot, d=(2, 50), order=(1, 5), display=False)
    >>> ex.values
    {'d': 10, 'order': 3}
    """
    if not callable(plot_fn):
        raise TypeError("explorer: plot_fn must be callable")
    try:
        params = inspect.signature(plot_fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        params = {}
    if params and "ax" not in params and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise TypeError("explorer: plot_fn must accept an `ax` keyword argument")
    unknown = [n for n in widget_specs if params and n not in params and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())]
    if unknown:
        raise TypeError(f"explorer: plot_fn has no parameter(s) {unknown}")

    parsed = {}
    for name, spec in widget_specs.items():
        default = params[name].default if name in params else inspect.Parameter.empty
        parsed[name] = _parse_spec(name, spec, default)
    values = {name: opts["value"] for name, (kind, opts) in parsed.items()}

    controls = {}
    live = display and _live_widgets_available()
    if live:
        controls = _build_controls(parsed)

    ex = Explorer(plot_fn, values, controls, figsize)
    if not display:
        ex.render()
        return ex

    from IPython.display import display as ipy_display

    fig = ex.render()
    ex._handle = ipy_display(fig, display_id=True)
    if controls:
        import ipywidgets as widgets

        for name, w in controls.items():
            w.observe(lambda change, name=name: ex.render(**{name: change["new"]}), names="value")
        box = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        ipy_display(_Controls(box, list(controls)))
    return ex


def _build_controls(parsed):
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    controls = {}
    for name, (kind, opts) in parsed.items():
        if kind == "int":
            w = widgets.IntSlider(description=name, continuous_update=False, style=style, **opts)
        elif kind == "float":
            w = widgets.FloatSlider(description=name, continuous_update=False, style=style, **opts)
        elif kind == "choice":
            w = widgets.Dropdown(description=name, style=style, **opts)
        elif kind == "widget":
            w = opts["widget"]
        else:
            continue
        controls[name] = w
    return controls
