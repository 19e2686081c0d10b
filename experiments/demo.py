"""The laptop demo (``make demo``): the digits task, every optimizer, seeds 1–3. No paper numbers: it shows
the pipeline and the qualitative picture (the regularised methods reach group sparsity, MSGD does not)."""

from experiments import Experiment

EXPERIMENT = Experiment(
    name="demo",
    title="Demo: digits",
    task="digits",
    optimizers=("ramda", "rmda", "proxsgd", "proxgen", "msgd"),
    metric="accuracy",
    metric_label="Accuracy (%)",
    higher_is_better=True,
    metric_digits=2,
    sparsity_digits=1,
    time_digits=2,
)
