"""Origin–destination flows and EV charging sites from pooled trip records.

Entry point ``mobility_ev.main:run``; see the bundle's README.md.
"""
