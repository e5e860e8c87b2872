"""``python -m actcam_ext.cli``: the ``actcam`` command."""

import sys

from actcam_ext.cli import main

sys.exit(main())
