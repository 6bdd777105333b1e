"""etcdserverpb: client-facing gRPC API and raft request payloads."""
