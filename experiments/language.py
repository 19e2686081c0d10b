"""WikiText-103 / Transformer-XL base (paper Table 3): validation perplexity, weighted group sparsity and
time per epoch, mean ± std over seeds 1–3. Each optimizer at the authors' released
setting (configs/preset/wikitext103/, experiments/released.py)."""

from ramda.tables.experiments import Experiment, PaperRow, Stat, grid

EXPERIMENT = Experiment(
    name="language",
    title="WikiText-103 / Transformer-XL",
    **grid("language"),
    metric="perplexity",
    metric_label="Perplexity",
    higher_is_better=False,
    metric_digits=2,
    sparsity_digits=1,
    time_digits=0,
    paper={
        "ramda": PaperRow(metric=Stat(26.97, 0.10), sparsity=Stat(36.2, 0.3), time_per_epoch=Stat(6954, 30)),
        "rmda": PaperRow(metric=Stat(27.10, 0.08), sparsity=Stat(36.0, 2.7), time_per_epoch=Stat(6184, 20)),
        "proxsgd": PaperRow(
            metric=Stat(27.42, 0.02), sparsity=Stat(33.1, 1.5), time_per_epoch=Stat(6167, 12)
        ),
        "proxgen": PaperRow(
            metric=Stat(27.49, 0.19), sparsity=Stat(30.5, 0.6), time_per_epoch=Stat(6652, 21)
        ),
    },
)
