#!/usr/bin/env python3
"""Entry point: LayerSkip training of a Llama. `python3 train/train.py --help`; under torchrun unchanged."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from layerskip.trainer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
