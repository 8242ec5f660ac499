"""Pipeline options of sink jobs, read like any Beam option (``--num_shards 4``)."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.call import RetryPolicy


class SinkOptions(PipelineOptions):
    """``--num_shards``, ``--sink_retry_attempts``, ``--sink_retry_base_delay``, ``--sink_timeout``."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--num_shards", type=int, default=1,
            help="buffers per sink; an entity's updates always go to the same shard (default 1)")
        parser.add_argument(
            "--sink_retry_attempts", type=int, default=RetryPolicy.attempts,
            help="calls of a failing sink function before its updates are dead-lettered")
        parser.add_argument(
            "--sink_retry_base_delay", type=float, default=RetryPolicy.base_delay,
            help="seconds before the first retry; doubled for each further retry")
        parser.add_argument(
            "--sink_timeout", type=float, default=None,
            help="seconds a sink function may run before the call counts as failed (default: no limit)")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.sink_retry_attempts, base_delay=self.sink_retry_base_delay,
                           timeout=self.sink_timeout)
