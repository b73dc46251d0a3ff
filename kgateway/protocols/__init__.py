"""Sans-IO wire-protocol codecs: bytes in, events out; no reactor, no sockets."""
