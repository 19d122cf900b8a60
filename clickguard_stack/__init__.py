"""The local stack: nodes and processes (manager, nodes, usage) and the installer (setup)."""
