"""``autotag worker``: processes that execute runs (``store.runs``) with the indexer's pipeline."""
