"""``python -m guardrail.bench …`` is ``guardrail bench …``."""

import sys

from guardrail.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
