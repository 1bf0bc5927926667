"""The chaos tier reuses the integration tier's fixtures (the shared broker and Redis, topic cleanup)."""

from tests.integration.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    brokers,
    kafka_admin,
    kafka_topics,
    redis_url,
    unique_name,
)
