import sys

from server.cli import main

# Guarded: worker processes may import the main module again (multiprocessing).
if __name__ == "__main__":
    sys.exit(main())
