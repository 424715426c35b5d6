"""Everything spatial: coordinate systems, grid index, grid import and synthesis."""
