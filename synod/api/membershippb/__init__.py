"""membershippb: cluster membership messages carried through raft."""
