"""What an event's record cannot hold, added when it is decoded: who the caller and the targets
are, their namespaces and containers, fd paths and socket endpoints."""
