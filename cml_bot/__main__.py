"""``python -m cml_bot``: the same as the ``cml-bot`` command."""

import sys

from cml_bot.cli import main

sys.exit(main())
