"""The store's read side: the queries behind the grid, the drill-down pages, the API and the
terminal, on cursors of the server's one connection; nothing here writes."""
