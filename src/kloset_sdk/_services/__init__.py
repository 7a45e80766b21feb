"""The service adapters: each gRPC service's messages as calls of one connector interface.

:mod:`.importer`, :mod:`.exporter` and :mod:`.storage` adapt one service each
and never import one another; what they share is in :mod:`.common`. The
importer's read-ahead of small records is :mod:`.readahead`.
"""
