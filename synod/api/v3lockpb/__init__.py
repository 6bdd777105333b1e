"""v3lockpb: distributed lock service."""
