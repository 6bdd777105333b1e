"""synod: an etcd-compatible, strongly consistent, distributed key-value store."""

__version__ = "0.1.0"
# The etcd API version synod speaks (what etcd reports as its cluster version).
ETCD_API_VERSION = "3.4"
