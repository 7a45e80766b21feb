"""The mapping between blobs and plakar's records.

:mod:`.paths`: blob names and plakar paths (and which are refused);
:mod:`.tree`: the directories a listing implies; :mod:`.attributes`: blob
properties and metadata as extended attributes, and
:mod:`.restore_attributes`: set back on restore; :mod:`.layout`: the blob
names of a Kloset store's objects.
"""
