"""The one error the stack manager raises for a node that cannot start or stay up."""


class StackError(RuntimeError):
    """A node exited, crash-loops, never got healthy, or lacks what `make setup` installs.

    The message says which node and where its log is; the CLI prints it as a one-line error
    instead of a traceback, whichever command (stack, bench, chaos, demo) started the node.
    """
