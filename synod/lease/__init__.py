"""Leases: TTLs that keys are attached to."""
