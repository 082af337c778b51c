"""Charts as PNG bytes: matplotlib's Agg backend (no display, no GUI toolkit) with Noto Sans
CJK from the ``noto-cjk-sans-otc`` wheel, so Chinese labels draw the same on every machine
whatever fonts its OS has (matplotlib's own DejaVu Sans has no CJK glyph: each would be a box).

Figures are made with ``matplotlib.figure.Figure`` directly, never through pyplot: pyplot
keeps global state and is not safe in the web server's threads.

    fig = charts.figure(8, 4)
    ax = fig.subplots()
    ax.bar(["金融投诉", "营销"], [0.3, 0.1])  # Chinese labels draw: the font is set for every text
    png = charts.png(fig)
"""

from __future__ import annotations

import io
import threading
from typing import Any

# The CJK font first, DejaVu (matplotlib's own) for any glyph it lacks.
FAMILY = ["Noto Sans CJK SC", "DejaVu Sans"]

# WeCom's group robot refuses images over 2 MB (its `image` message); every chart fits.
MAX_PNG_BYTES = 2 * 1024 * 1024

_ready = False
_lock = threading.Lock()


class ChartError(Exception):
    """A chart could not be drawn within the limits (never expected for our charts)."""


def _setup() -> None:
    """Register the bundled font with matplotlib, once per process."""
    global _ready
    with _lock:
        if _ready:
            return
        import matplotlib

        matplotlib.use("Agg", force=False)  # before anything imports pyplot; a no-op when it is Agg already
        from matplotlib import font_manager

        try:
            import noto_cjk_sans_otc
        except ImportError:  # the wheel missing: charts still draw, with boxes for Chinese
            pass
        else:
            font_manager.fontManager.addfont(str(noto_cjk_sans_otc.FONT_PATH))
        # Every text of every figure: titles, ticks, legends (set once, before any figure).
        matplotlib.rcParams["font.family"] = "sans-serif"
        matplotlib.rcParams["font.sans-serif"] = FAMILY
        matplotlib.rcParams["axes.unicode_minus"] = False  # U+2212 is not in every font
        _ready = True


def figure(width_in: float, height_in: float, dpi: int = 100) -> Any:
    """An empty figure whose text uses the CJK font."""
    _setup()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    fig.set_facecolor("white")
    return fig


def text(value: object, limit: int = 40) -> str:
    """``value`` as a label matplotlib draws as it is: one line, $ escaped (it would start
    mathtext, and a malformed formula fails the whole chart), a leading _ guarded (a legend
    leaves such labels out), at most ``limit`` characters."""
    out = "".join(c if c.isprintable() else " " for c in str(value))
    out = out if len(out) <= limit else out[: limit - 1] + "…"
    out = out.replace("$", r"\$")
    return " " + out if out.startswith("_") else out


def png(fig: Any, max_bytes: int = MAX_PNG_BYTES) -> bytes:
    """``fig`` as PNG bytes, at most ``max_bytes``: drawn again at a lower resolution until it fits."""
    dpi = fig.get_dpi()
    while dpi >= 30:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
        data = buf.getvalue()
        if len(data) <= max_bytes:
            return data
        dpi = int(dpi * 0.7)
    raise ChartError(f"chart does not fit in {max_bytes} bytes even at 30 dpi")
