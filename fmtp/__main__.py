"""
C{python -m fmtp}: the C{fmtp} command.
"""

from fmtp.cli import main

main()
