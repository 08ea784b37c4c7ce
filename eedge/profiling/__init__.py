"""Per-stage latency on a target, and the expected latency of the cascade."""
