"""``python -m guardrail.synth``: write synthetic records to a JSONL file."""

from guardrail.synth import main

raise SystemExit(main())
