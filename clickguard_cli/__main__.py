"""``python -m clickguard_cli``: the same as the ``clickguard`` command."""

import sys

from clickguard_cli.cli import main

sys.exit(main())
