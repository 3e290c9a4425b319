"""Storage drivers: the thin layer that talks to a filesystem or an S3 server."""
