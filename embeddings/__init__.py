"""CLIP models shared by the indexer and the API: weights, image and text embeddings.

The indexer embeds images (and tags them with the same model); the API embeds the text of a
``similar:"..."`` query with the text tower of the model that made the index's embeddings.
Both import this package; it imports nothing of ours but ``store.embeddings`` (what an index
records about its embedding model).
"""
