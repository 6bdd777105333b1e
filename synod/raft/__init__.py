"""Consensus: the node that orders proposals into a durable, committed log."""
