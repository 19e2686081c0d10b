"""ImageNet / torchvision ResNet50, 160 epochs (paper Table 2): top-1 validation accuracy and weighted group
sparsity, mean ± std over seeds 1–3. MSGD is the unregularised baseline (the paper reports no number for it)."""

from ramda.tables.experiments import Experiment, PaperRow, Stat, grid

EXPERIMENT = Experiment(
    name="vision",
    title="ImageNet / ResNet50",
    **grid("vision"),
    metric="top1",
    metric_label="Top-1 acc. (%)",
    higher_is_better=True,
    metric_digits=2,
    sparsity_digits=2,
    time_digits=0,
    paper={
        "ramda": PaperRow(metric=Stat(74.53, 0.10), sparsity=Stat(29.19, 0.94)),
        "rmda": PaperRow(metric=Stat(74.47, 0.08), sparsity=Stat(25.20, 1.69)),
        "proxsgd": PaperRow(metric=Stat(73.50, 0.20), sparsity=Stat(17.54, 1.26)),
        "proxgen": PaperRow(metric=Stat(74.17, 0.08), sparsity=Stat(20.29, 0.22)),
    },
)
