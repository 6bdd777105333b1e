"""etcd's auth: users, roles and key permissions (``store``), tokens (``tokens``), passwords."""
