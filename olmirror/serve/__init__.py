"""How workers reach the mirror: its web folder as it is, or olmirror's own nginx instance,
checked to answer from the host that serves it."""
