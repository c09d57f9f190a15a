"""The Viewer's radiograph: a Plotly figure with zoom and pan, window/level, and the Grad-CAM overlay
drawn with a colour scale (its colour bar says what the colours mean)."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import plotly.express as px
import plotly.graph_objects as go

from cxr_core.model.gradcam import upsample

DISPLAY_MAX = 768  # pixels on the long side sent to the browser: enough on screen, light on the wire
# cv2 colour map (the PDF's overlay) -> the same Plotly colour scale (the screen's)
COLOR_SCALES = {"jet": "Jet", "inferno": "Inferno", "viridis": "Viridis", "turbo": "Turbo", "hot": "Hot"}


def window(pixels: np.ndarray, level: float, width: float) -> np.ndarray:
    """Window/level on [0, 1] pixels: `level` is the centre, `width` the range mapped to black..white."""
    if not 0.0 < width <= 1.0:
        raise ValueError(f"window width {width!r} must be in (0, 1]")
    low = level - width / 2
    return np.clip((pixels - low) / width, 0.0, 1.0)


def _display_size(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = shape
    scale = min(1.0, DISPLAY_MAX / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def png_data_uri(gray: np.ndarray) -> str:
    """An 8-bit grey image as a PNG data URI, the figure's film. Encoded here (cv2, a few ms for a 224-px film)
    rather than by plotly express's imshow (about 30 ms): a window / level step redraws faster."""
    ok, png = cv2.imencode(".png", gray, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("the film could not be encoded for display")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


def _fading(colormap: str) -> list[list]:
    """The colour scale with its opacity rising from 0 (no evidence: the film shows through) to 1."""
    from plotly.colors import get_colorscale, unlabel_rgb  # lazy: heavy

    out = []
    for value, colour in get_colorscale(COLOR_SCALES[colormap]):
        r, g, b = unlabel_rgb(colour) if colour.startswith("rgb") else px.colors.hex_to_rgb(colour)
        out.append([value, f"rgba({r:.0f},{g:.0f},{b:.0f},{value:.3f})"])
    return out


def radiograph_figure(pixels: np.ndarray, heatmap: np.ndarray | None, level: float = 0.5, width: float = 1.0,
                      opacity: float = 0.5, colormap: str = "inferno", height: int = 460,
                      revision: str = "film") -> go.Figure:
    """The windowed radiograph (zoom/pan with the mouse) and, when `heatmap` is given, Grad-CAM on top.
    `revision` (Plotly's uirevision): while it stays the same, the reader's zoom and pan survive a redraw
    (a window/level change); a new film gets a new one."""
    if colormap not in COLOR_SCALES:
        raise ValueError(f"colormap {colormap!r} is not one of {sorted(COLOR_SCALES)}")
    h, w = _display_size(pixels.shape[:2])
    shown = cv2.resize(window(pixels, level, width), (w, h), interpolation=cv2.INTER_AREA)
    fig = go.Figure(go.Image(source=png_data_uri((shown * 255).round().astype(np.uint8)), hoverinfo="skip"))
    if heatmap is not None:
        heat = upsample(heatmap, (h, w))
        fig.add_trace(go.Heatmap(z=heat, colorscale=_fading(colormap), zmin=0, zmax=1, opacity=opacity,
                                 hovertemplate="pneumonia evidence %{z:.2f}<extra></extra>",
                                 colorbar=dict(title=dict(text="Evidence", side="right"), thickness=12,
                                               tickvals=[0, 0.5, 1], ticktext=["none", "", "strong"])))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=0, b=0), dragmode="pan", uirevision=revision)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    return fig
