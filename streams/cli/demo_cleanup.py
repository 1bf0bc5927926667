"""Deletes the demo's topics (those of PORTSCAN_APP_ID) so repeated demos leave the broker clean."""

from __future__ import annotations

from streams.kafka.topics import admin, partition_counts
from streams.settings import Settings

if __name__ == "__main__":
    settings = Settings.load()
    client = admin(settings)
    mine = [
        t
        for t in partition_counts(client)
        if t.startswith(settings.app_id)
        or t in (settings.input_topic, settings.alert_topic, settings.dlq_topic)
    ]
    if mine:
        for future in client.delete_topics(mine, operation_timeout=30).values():
            future.result(timeout=30)
        print(f"== removed the demo's {len(mine)} topics")
