"""The assemble stage: per-entity state that turns feature updates into each sink's inputs."""
from transforms import state_cache
from transforms.assemble.assemble import Assemble, reads_in_bundles
from transforms.assemble.parse import BadUpdate, UpdateParser
from transforms.assemble.related import RelatedRows

# Here, with the stateful DoFns whose state it weighs cheaply, so that every process that
# unpickles one of them (a remote runner's workers too) has it: see transforms/state_cache.py.
state_cache.install()

__all__ = ["Assemble", "BadUpdate", "RelatedRows", "UpdateParser", "reads_in_bundles"]
