"""Provide an Elasticsearch: find Java, fetch the distribution, run local clusters."""

from store.provision.cluster import ClusterStatus, LocalCluster, default_cache_dir, free_port
from store.provision.distribution import ES_VERSION, ensure_distribution
from store.provision.errors import ProvisionError
from store.provision.java import find_java

__all__ = [
    "ES_VERSION",
    "ClusterStatus",
    "LocalCluster",
    "ProvisionError",
    "default_cache_dir",
    "ensure_distribution",
    "find_java",
    "free_port",
]
