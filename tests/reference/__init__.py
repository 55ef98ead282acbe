"""Pure-Python reference implementation of the seclink/1 protocol (see docs/PROTOCOL.md)."""
