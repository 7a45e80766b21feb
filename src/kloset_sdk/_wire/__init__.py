"""The wire: gRPC over HTTP/2 on plakar's two pipes.

:mod:`.h2state` holds the rules of HTTP/2 and the connection's state, without
I/O; :mod:`.http2` reads and writes the frames; :mod:`.rpc` runs the gRPC
calls on the streams; :mod:`.pipes` makes stdin and stdout ready to carry them.
"""
