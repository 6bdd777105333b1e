"""mvccpb: stored key-value and watch event messages."""
