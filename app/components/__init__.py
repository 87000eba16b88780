"""Dash building blocks shared by pages: share links, not-found notices, health panels."""
