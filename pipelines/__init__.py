"""Jobs: definitions, sources and runners wired into Beam pipelines (``python -m pipelines``)."""
