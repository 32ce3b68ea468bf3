"""The daemon's I/O adapters: sockets and timers around the sans-I/O core."""
