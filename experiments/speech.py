"""LJSpeech / Tacotron2 (paper Table 4): validation loss, weighted group sparsity and time per epoch,
mean ± std over seeds 1–3, for the four structured-sparsity optimizers (the Adam baseline of docs/math.md#the-papers-settings has a
preset, ``optimizer=adam``, but is not part of the paper's table)."""

from ramda.tables.experiments import Experiment, PaperRow, Stat, grid

EXPERIMENT = Experiment(
    name="speech",
    title="LJSpeech / Tacotron2",
    **grid("speech"),
    metric="val_loss",
    metric_label="Validation loss",
    higher_is_better=False,
    metric_digits=2,
    sparsity_digits=1,
    time_digits=0,
    paper={
        "ramda": PaperRow(metric=Stat(0.44, 0.01), sparsity=Stat(52.9, 1.6), time_per_epoch=Stat(443, 1)),
        "rmda": PaperRow(metric=Stat(0.46, 0.01), sparsity=Stat(45.9, 1.7), time_per_epoch=Stat(431, 2)),
        "proxsgd": PaperRow(metric=Stat(0.50, 0.00), sparsity=Stat(34.3, 1.6), time_per_epoch=Stat(431, 0)),
        "proxgen": PaperRow(metric=Stat(0.45, 0.01), sparsity=Stat(45.6, 0.9), time_per_epoch=Stat(438, 2)),
    },
)
