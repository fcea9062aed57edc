"""Placement: resource shapes, cluster view, and the head scheduler that grants leases."""
