"""v3electionpb: leader election service."""
