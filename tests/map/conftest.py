"""Make ``_map_tasks`` importable here and in worker processes (which inherit
``sys.path`` from the parent)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
