"""
C{python -m fmtp}: the C{fmtp} command.
"""

import sys

from fmtp.cli import main

sys.exit(main())
