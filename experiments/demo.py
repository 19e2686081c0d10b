"""The laptop demo (``make demo``): the four structured-sparsity optimizers on the digits task, seed 1 (a few
minutes on a laptop CPU; add ``seed=1,2,3`` for mean ± std). No paper numbers: it shows the pipeline."""

from ramda.tables.experiments import Experiment, grid

EXPERIMENT = Experiment(
    name="demo",
    title="Demo: digits",
    **grid("demo"),
    metric="accuracy",
    metric_label="Accuracy (%)",
    higher_is_better=True,
    metric_digits=2,
    sparsity_digits=1,
    time_digits=2,
)
