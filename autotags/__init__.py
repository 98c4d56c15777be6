"""Autotags trained from examples (as in Scale Nucleus): a linear model on the stored image
embeddings, fitted from a few positive items (and negatives, or random items), refined from
reviews, and written as image predictions scored in [-1, 1] under ``autotag:<name>@<version>``.

Used by the API (``/v1/autotags``) and the CLI (``autotag autotags``); it imports ``store`` and
``search``, never ``api`` or ``indexer``.
"""
