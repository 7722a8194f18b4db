"""The method comparison's report: `report.md` with its tables and five PNG plots.

`write_report(compare_dir, run_summaries, ...)` reads nothing but the run summaries it is
given and, for the image plots, one EEPrune run's `scores.npz` and the training images.
Split by concept: `aggregation` (numbers over seeds), `frontier` (reading a method against
training less at its own cost), `plots` (the PNGs and their data) and `markdown`
(report.md). Paths may be local or gs://.
"""

from eeprune_jax.report.aggregation import Row, RunResult, aggregate, frontier_points
from eeprune_jax.report.markdown import frontier_table, results_table, write_report
from eeprune_jax.report.plots import ACCURACY_PLOT, CLASS_PLOT, COST_PLOT, GRID_PLOT, HIST_PLOT

__all__ = ['ACCURACY_PLOT', 'CLASS_PLOT', 'COST_PLOT', 'GRID_PLOT', 'HIST_PLOT', 'Row',
           'RunResult', 'aggregate', 'frontier_points', 'frontier_table', 'results_table',
           'write_report']
