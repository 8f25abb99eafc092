"""Seeing what the spatial transformers do: traces, panels, GIFs, a Lightning callback and the visualize app."""

from stnlab.viz.panels import panel_grid, write_gif
from stnlab.viz.trace import STView, border_points, trace_sts

__all__ = ["STView", "border_points", "trace_sts", "panel_grid", "write_gif"]
