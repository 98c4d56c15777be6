"""Provide an Elasticsearch: find Java, fetch and verify the distribution, run local clusters."""

from store.provision.cluster import ClusterStatus, LocalCluster, free_port
from store.provision.distribution import PINNED_SHA512, ensure_distribution
from store.provision.errors import ProvisionError
from store.provision.java import find_java

__all__ = [
    "PINNED_SHA512",
    "ClusterStatus",
    "LocalCluster",
    "ProvisionError",
    "ensure_distribution",
    "find_java",
    "free_port",
]
