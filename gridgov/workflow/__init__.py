"""The event life cycle: states, transitions, guards, time limits, audit trail (no Flask)."""
