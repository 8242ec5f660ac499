"""Beam building blocks that sinks compile into: pacing, calling user functions, SQL writes."""
