"""The directing options users choose from, as plain data (no heavy imports: the CLI's --help)."""

INTERPOLATIONS = ("linear", "slerp")  # how text states blend between two prompt keyframes
FREEINIT_FILTERS = ("butterworth", "gaussian")  # the low-pass's shape
FREEINIT_CUTOFF = 0.25  # the paper's stop frequency, a fraction of the highest frequency
