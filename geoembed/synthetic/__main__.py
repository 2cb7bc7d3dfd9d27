"""``python -m geoembed.synthetic [OUT_DIR] [--size N] [--seed S] [--overwrite]``."""

import sys

from geoembed.synthetic.write import main

sys.exit(main())
