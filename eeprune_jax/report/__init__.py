"""The method comparison's report: `report.md` with a results table and four PNG plots.

`write_report(compare_dir, run_summaries, ...)` reads nothing but the run summaries it is
given and, for the image plots, one EEPrune run's `scores.npz` and the training images.
Split by concept: `aggregation` (numbers over seeds), `plots` (the PNGs and their data)
and `markdown` (report.md). Paths may be local or gs://.
"""

from eeprune_jax.report.aggregation import Row, RunResult, aggregate
from eeprune_jax.report.markdown import results_table, write_report
from eeprune_jax.report.plots import ACCURACY_PLOT, CLASS_PLOT, GRID_PLOT, HIST_PLOT

__all__ = ['ACCURACY_PLOT', 'CLASS_PLOT', 'GRID_PLOT', 'HIST_PLOT', 'Row', 'RunResult',
           'aggregate', 'results_table', 'write_report']
