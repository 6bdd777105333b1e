"""Communication between members: the Raft peer transport."""
