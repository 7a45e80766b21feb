"""How a connector process starts: served on stdio, or forked from a fork server."""
