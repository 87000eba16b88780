"""The runs grid's view model: the rows and columns AG Grid shows (`rows.py`, `columns.py`) and
the smallest update that brings an open page up to date (`delta.py`). Plain data, no Dash."""
