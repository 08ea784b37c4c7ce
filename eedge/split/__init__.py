"""Split computing: choose a head/tail cut, encode hand-offs, serve the tail."""
