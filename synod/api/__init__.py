"""Protocol buffer definitions wire-compatible with etcd v3.5."""
