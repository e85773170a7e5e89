"""`python -m keras_reg COMMAND`, also installed as the `keras-reg` script."""

import sys

from keras_reg.compare.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
