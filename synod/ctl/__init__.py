"""synodctl: an etcdctl 3.4-compatible command line client (KV commands), see synod.ctl.main."""
