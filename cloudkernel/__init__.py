"""cloudkernel: a messaging daemon for swarms of small machines.

Signals (topic, value, confidence, lifetime) travel between nodes over lossy
UDP multicast, protected by forward error correction, and many noisy signals
are fused into one trustworthy value per topic.
"""

from ._version import __version__

__all__ = ["__version__"]
