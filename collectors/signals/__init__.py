"""Health signals computed next to the model: one concept per module (DESIGN.md §5, STYLE.md)."""
