"""Rendering plumbing shared by every core: reusable Agg figures, the ``human`` window, small drawing helpers.

A core draws itself by defining ``render_rgb(self, i)`` (an ``(H, W, 3)`` ``uint8`` image of
copy ``i``) and/or ``render_ansi(self, i)`` (a text summary). :class:`~deploy_envs.core.batched.BatchedCore`
derives ``metadata["render_modes"]`` from the methods it finds (``render_rgb`` gives
``"rgb_array"`` and ``"human"``, ``render_ansi`` gives ``"ansi"``) and dispatches
``render_index`` on the render mode, so the views (single, vector, PettingZoo) never need to
know how a topic draws.

Pictures that are plots (distributions, curves, bars) are drawn with matplotlib on a
:class:`Sketch`: a figure with the Agg canvas (no display server), created once per core and
cleared for each frame, which keeps a frame at a few tens of milliseconds. ``human`` mode
shows the same frames in a matplotlib window (:class:`HumanWindow`); under a non-interactive
backend (``MPLBACKEND=Agg``, headless CI) the window draws off screen and nothing waits.

Rendering only reads a core's state: it never draws from ``core.rngs`` or changes an array,
so an episode is the same with or without ``render()`` calls (``tests/test_rendering.py``).
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: owner (a core) -> {key: Sketch or HumanWindow}; weak, so nothing here keeps a core alive or
#: becomes part of its state (copies and pickles of a core carry no figure)
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

PALETTE = {
    "blue": "#1f77b4", "orange": "#ff7f0e", "green": "#2ca02c", "red": "#d62728",
    "purple": "#9467bd", "grey": "#7f7f7f", "black": "#222222",
}


def save_figure(fig: Any, path: Any, dpi: int = 100) -> Path:
    """Lay out a finished matplotlib figure, write it to ``path`` (creating its folder) and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


class Sketch:
    """A matplotlib figure with an Agg canvas, kept and cleared between frames.

    ``size`` is the image size in pixels ``(width, height)``; ``grid`` is ``(rows, cols)``
    of axes (``width_ratios``/``height_ratios`` as in ``Figure.subplots``)."""

    def __init__(self, size: tuple[int, int] = (480, 300), grid: tuple[int, int] = (1, 1), *, dpi: int = 80,
                 width_ratios: Sequence[float] | None = None, height_ratios: Sequence[float] | None = None,
                 margins: dict[str, float] | None = None) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        w, h = size
        self.fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.fig)
        gridspec_kw = {k: v for k, v in (("width_ratios", width_ratios), ("height_ratios", height_ratios)) if v is not None}
        axes = self.fig.subplots(*grid, squeeze=False, gridspec_kw=gridspec_kw or None)
        self.axes = list(axes.ravel())
        self.fig.subplots_adjust(**{"left": 0.08, "right": 0.97, "bottom": 0.12, "top": 0.84, "wspace": 0.35, "hspace": 0.5, **(margins or {})})

    def begin(self, title: str = "", fontsize: float = 9) -> list[Any]:
        """Clear every axes (and set the figure title); return the axes to draw on."""
        for ax in self.axes:
            ax.cla()
            ax.set_axis_on()
        self.fig.suptitle(title, fontsize=fontsize)
        return self.axes

    def finish(self) -> np.ndarray:
        """Draw the figure and return it as an ``(H, W, 3)`` ``uint8`` array (a copy)."""
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[:, :, :3].copy()


def sketch(owner: Any, key: str = "main", **layout: Any) -> Sketch:
    """The :class:`Sketch` of ``owner`` (a core) called ``key``, created with ``layout`` on first use."""
    figures = _CACHE.setdefault(owner, {})
    found = figures.get(key)
    if found is None:
        found = figures[key] = Sketch(**layout)
    return found


def release(owner: Any) -> None:
    """Close ``owner``'s window and drop its figures (the views call this from ``close``)."""
    figures = _CACHE.pop(owner, None) or {}
    for item in figures.values():
        if isinstance(item, HumanWindow):
            item.close()


# --------------------------------------------------------------------- human
class HumanWindow:
    """A matplotlib window showing rgb frames (``render_mode="human"``).

    With an interactive backend (TkAgg, QtAgg, ...) it is a pyplot window refreshed at the
    core's ``render_fps``; with a non-interactive one (Agg: no display, CI) the frames are drawn
    on an off-screen figure that pyplot does not track, and nothing waits."""

    def __init__(self, title: str, fps: float) -> None:
        self.fps = float(fps) if fps else 4.0
        self.plt = None
        if interactive_backend():
            import matplotlib.pyplot as plt

            self.plt = plt
            self.fig = plt.figure(title, figsize=(6, 4))
        else:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            self.fig = Figure(figsize=(6, 4))
            FigureCanvasAgg(self.fig)
        self.fig.subplots_adjust(0, 0, 1, 1)
        self.ax = self.fig.add_subplot()
        self.ax.set_axis_off()
        self.image = None
        self.frames_shown = 0
        self.last_frame: np.ndarray | None = None

    def show(self, frame: np.ndarray) -> None:
        if self.image is None or self.image.get_array().shape != frame.shape:
            self.ax.cla()
            self.ax.set_axis_off()
            self.image = self.ax.imshow(frame)
            h, w = frame.shape[:2]
            self.fig.set_size_inches(w / self.fig.dpi, h / self.fig.dpi)
        else:
            self.image.set_data(frame)
        self.last_frame = frame
        self.frames_shown += 1
        if self.plt is not None:
            self.plt.show(block=False)
            self.plt.pause(1.0 / self.fps)
        else:
            self.fig.canvas.draw()  # off screen: draw, do not wait

    def close(self) -> None:
        if self.plt is not None:
            self.plt.close(self.fig)


def interactive_backend() -> bool:
    """Whether matplotlib's backend draws on screen (``MPLBACKEND=Agg`` or no display: False)."""
    import matplotlib

    backend = str(matplotlib.rcParams._get_backend_or_none() or "")
    if not backend:  # not chosen yet: let pyplot resolve it (it falls back to Agg without a display)
        import matplotlib.pyplot as plt

        backend = plt.get_backend()
    try:
        from matplotlib.backends import BackendFilter, backend_registry

        return backend.lower() in backend_registry.list_builtin(BackendFilter.INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        from matplotlib import rcsetup

        return backend.lower() in [b.lower() for b in rcsetup.interactive_bk]


def human_window(owner: Any) -> HumanWindow:
    """``owner``'s window, opened on first use."""
    figures = _CACHE.setdefault(owner, {})
    window = figures.get("human")
    if window is None:
        title = type(owner).__name__.removesuffix("Core")
        window = figures["human"] = HumanWindow(title, owner.metadata.get("render_fps", 4))
    return window


def show_human(owner: Any, i: int = 0) -> None:
    """Draw copy ``i`` of ``owner`` into its window (what ``human`` mode does after each reset and step)."""
    human_window(owner).show(owner.render_rgb(i))


# ------------------------------------------------------------------- helpers
def text_panel(ax: Any, lines: Sequence[str], *, fontsize: float = 8, title: str = "") -> None:
    """Write ``lines`` in a monospaced block on ``ax`` (axis hidden)."""
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    ax.text(0.0, 1.0, "\n".join(lines), family="monospace", fontsize=fontsize, va="top", ha="left", transform=ax.transAxes)


def image_of(x: np.ndarray) -> np.ndarray:
    """An input as something ``imshow`` takes: ``(C, H, W)`` -> ``(H, W)`` or ``(H, W, C)``; a flat square vector -> ``(s, s)``."""
    x = np.asarray(x)
    if x.ndim == 1:
        s = int(round(np.sqrt(x.size)))
        return x.reshape(s, s) if s * s == x.size else x[None, :]
    if x.ndim == 3:
        return x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))
    return x


def no_ticks(*axes: Any) -> None:
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])


def mosaic(ax: Any, images: Sequence[np.ndarray], labels: Sequence[str], *, cols: int = 4, colours: Sequence[str] | None = None,
           title: str = "", fontsize: float = 7, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "gray") -> None:
    """Tile equally sized 2-D images on ``ax`` in one ``imshow`` (fast), each with its label underneath."""
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    if not len(images):
        ax.text(0.5, 0.5, "nothing yet", ha="center", va="center", fontsize=fontsize + 1, transform=ax.transAxes)
        return
    tiles = [image_of(x) for x in images]
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    pad = max(1, h // 8)
    lab = max(3, h // 3)  # room for the label under each tile
    canvas = np.full((rows * (h + pad + lab), cols * (w + pad)) + tiles[0].shape[2:], np.nan, np.float32)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        canvas[r * (h + pad + lab): r * (h + pad + lab) + h, c * (w + pad): c * (w + pad) + w] = t
    ax.imshow(np.ma.masked_invalid(canvas), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_facecolor("white")
    for k, text in enumerate(labels):
        r, c = divmod(k, cols)
        ax.text(c * (w + pad) + w / 2 - 0.5, r * (h + pad + lab) + h + lab / 2 - 0.5, text, ha="center", va="center", fontsize=fontsize,
                color=(colours[k] if colours is not None else "black"))
