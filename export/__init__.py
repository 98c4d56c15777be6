"""Exports for retraining: a query's items, sampled, written as COCO, JSONL or YOLO.

Shared by ``POST /v1/export`` (``api/``) and ``autotag export`` (``cli/``), which is why it is
a package of its own: the API may not import the indexer, and both need the same writers.

- :mod:`export.spec`: what an export is (format, content, sampling) and what it states.
- :mod:`export.content`: which predictions of an item an export contains (model predictions
  or reviewed labels), from one table.
- :mod:`export.select`: which items, read from Elasticsearch over a point in time with
  ``search_after`` (bounded memory): all of them, or a sample (``uncertain``, ``random``,
  ``stratified``).
- :mod:`export.formats`: the writers; :mod:`export.zipstream`: a ZIP written front to back.
- :mod:`export.run`: the loop that ties them together and yields the bytes.

Imports run one way: ``export`` uses ``search`` (translation) and ``store`` (field names);
``api`` and ``cli`` use ``export``.
"""
