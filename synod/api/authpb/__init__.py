"""authpb: users, roles and permissions."""
