"""Peers of `make bench`: the same rule in Kafka Streams (kstreams/) and Quix Streams (quix_peer.py)."""
