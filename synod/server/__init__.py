"""The synod member: EtcdServer, its services and its process."""

import os

# synod never forks a process that goes on using gRPC (front ends are exec'd), so
# gRPC's fork handlers are not needed; without this they log at every spawn.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
