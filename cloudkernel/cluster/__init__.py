"""Tools to run a cluster of cloudkernel nodes on one Linux host for soak and chaos tests."""
