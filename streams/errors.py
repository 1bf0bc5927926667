"""The job's errors: one root type, and whether waiting and trying again can help.

`retriable` errors (an outage) are waited out where the job can wait, and end a stopping worker
quietly; the others (credentials, configuration) end the worker at once with their message.
"""

from __future__ import annotations


class JobError(Exception):
    """Root of the errors the job raises on purpose; the message is meant for the operator."""

    retriable = False


class ServiceUnreachable(JobError):
    """Kafka or Redis did not answer (within the time allowed)."""

    retriable = True


class StoreUnavailable(ServiceUnreachable):
    """The store could not be reached before the worker had to stop."""


class AuthError(JobError):
    """A service refused our credentials or permissions."""


class Fenced(JobError):
    """Another worker claimed these partitions of a shared store since this one did: this worker's
    writes of them are refused (it is not their owner any more), and it must let them go."""

    def __init__(self, partitions: list[int]) -> None:
        super().__init__(f"partitions {partitions} were claimed by another worker: not written")
        self.partitions = partitions
