"""The whole suite's settings, loaded before any test module imports the testbed."""

import os

# The tests patch the simulator's classes and module constants, which its compiled modules do not allow
# (sim/native.py): they run the interpreted simulator; tests/test_native.py checks the compiled one gives the
# same tables, each in a process of its own. `make bench` sets 0: its figures are the compiled simulator's.
os.environ.setdefault("TESTBED_INTERPRETED", "1")
