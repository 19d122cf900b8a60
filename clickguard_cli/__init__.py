"""The `clickguard` command line: the top layer, it may import every tool."""
