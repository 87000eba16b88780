"""Pure figure builders: frozen data in, a plotly Figure out (no store, no Dash), unit-tested.

Every figure carries a `uirevision` so a live refresh replaces data but keeps zoom and legend.
"""
