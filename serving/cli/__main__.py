"""`python -m serving.cli ...`, the same as `arrisk ...`."""

import sys

from serving.cli import main

if __name__ == "__main__":
    sys.exit(main())
