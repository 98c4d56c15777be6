"""Provide an Elasticsearch: find Java, fetch the distribution, run local clusters."""

from search.provision.cluster import ClusterStatus, LocalCluster, default_cache_dir, free_port
from search.provision.distribution import ES_VERSION, ensure_distribution
from search.provision.errors import ProvisionError
from search.provision.java import find_java

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
