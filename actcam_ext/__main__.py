"""``python -m actcam_ext``: the ``actcam`` command."""

import sys

from actcam_ext.cli import run_command

sys.exit(run_command())
