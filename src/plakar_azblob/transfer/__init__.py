"""The Azure I/O: listings, reads and uploads.

:mod:`.direct` reads blobs and listing pages through azure-core's pipeline on
:mod:`.http_transport` (our urllib3 transport), outside the SDK's objects;
:mod:`.listing` parses the pages, checked for well-formed XML by
:mod:`.wellformed` in the helper process :mod:`.xmlcheck` starts; :mod:`.ranges`
reads a blob in ranges and resumes a broken stream; :mod:`.blocks` uploads a
stream as staged blocks.
"""
