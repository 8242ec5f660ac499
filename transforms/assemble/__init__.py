"""The assemble stage: per-entity state that turns feature updates into each sink's inputs."""
from transforms.assemble.assemble import Assemble
from transforms.assemble.parse import BadUpdate, UpdateParser
from transforms.assemble.related import RelatedRows

__all__ = ["Assemble", "BadUpdate", "RelatedRows", "UpdateParser"]
