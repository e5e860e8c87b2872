"""``python -m actcam_ext``: the ``actcam`` command."""

import sys

from actcam_ext.cli import main

sys.exit(main())
