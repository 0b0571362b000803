"""``mlbench select``: which model is the right size for this data?

Candidate models (``select.candidates``: built-in or any model source the config allows; or the
run's model over a grid, ``select.sweep``) are trained with the run's training recipe on the same
splits and seed (each cached like a baseline). For each: a learning curve (trained again on
seeded nested fractions of the train split, scored on the same test items, err(n) = a·n^(−b) + c
fitted with a bootstrap band: the data checks' sufficiency fit), capacity (parameters, FLOPs of
one forward pass counted by ``torch.utils.flop_counter``), the train/validation gap, the test
metrics, and the requirements (``select.requirements``, relative ones against the most accurate
candidate, with paired intervals). Beside them, the data's complexity (Bayes-error bounds, F1,
N1, intrinsic dimension: the complexity check). The recommendation is the candidate that meets
every requirement and is best on ``select.objective`` (default: fewest FLOPs), tie-breakers as
for variants; the runner-up and why it lost are stated.

``candidates.py`` trains and measures; ``report.py`` decides, plots and renders.
"""

from mlbench.select.candidates import Candidate, candidates_of, measure_candidates
from mlbench.select.report import decide, print_select, run_select_command

__all__ = ["Candidate", "candidates_of", "measure_candidates", "decide", "print_select", "run_select_command"]
