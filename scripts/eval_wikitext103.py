"""Evaluate a WikiText-103 checkpoint with the released test protocol (``Transformer-XL/pytorch/
<Opt>_wt103_base.yaml``, section ``eval``): the test split in windows of 64 tokens with a memory of 640,
positions clamped at 400, ``same_length`` attention, eval batch 16, full precision. The table's figure is the
run's own final *validation* perplexity (``metrics.jsonl``); this is the authors' separate test evaluation.

    python scripts/eval_wikitext103.py results/runs/language/wikitext103/ramda/seed1/<time>
    python scripts/eval_wikitext103.py RUN_DIR --split valid --tgt-len 192 --mem-len 192 --clamp-len -1 \\
        --no-same-length        # the periodic validation of the run, recomputed

Prints one line: split, loss, perplexity, and the checkpoint's step.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def evaluate(run: Path, split: str, tgt_len: int, mem_len: int, clamp_len: int, same_length: bool, batch: int,
             device: str) -> dict[str, float]:  # fmt: skip
    """Load ``run``'s checkpoint (a run directory or the file), rebuild its task and model from the saved
    config with the protocol's evaluation settings, and evaluate ``split``."""
    import torch

    from ramda.engine.checkpoint import load
    from ramda.tasks.base import RunEnv
    from ramda.tasks.wikitext103 import Config, DataConfig, WikiText103Task

    path = run / "checkpoint.pt" if run.is_dir() else run
    state = load(path)
    saved = dict(state["config"]["task"])
    if saved.get("name") != "wikitext103":
        raise ValueError(f"{path} holds a {saved.get('name')} run, not wikitext103")
    data = DataConfig(**saved.pop("data"))
    fields = {f.name for f in dataclasses.fields(Config)}
    cfg = Config(data=data, **{k: v for k, v in saved.items() if k in fields})
    cfg = dataclasses.replace(
        cfg, eval_tgt_len=tgt_len, eval_mem_len=mem_len, clamp_len=clamp_len, same_length=same_length,
        eval_batch_size=batch, max_eval_batches=0,
    )  # fmt: skip
    task = WikiText103Task(cfg, RunEnv(torch.device(device), seed=int(state["config"].get("seed", 1))))
    model = task.build_model()
    model.load_state_dict(state["model"])
    with torch.no_grad():
        metrics = task.evaluate(model, split=split)
    return {**metrics, "step": state["global_step"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a run directory (its checkpoint.pt) or a checkpoint file")
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    parser.add_argument("--tgt-len", type=int, default=64)
    parser.add_argument("--mem-len", type=int, default=640)
    parser.add_argument("--clamp-len", type=int, default=400)
    parser.add_argument("--same-length", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    from ramda.engine.errors import ConfigError

    try:
        m = evaluate(args.run, args.split, args.tgt_len, args.mem_len, args.clamp_len, args.same_length,
                     args.batch_size, args.device)  # fmt: skip
    except (ValueError, FileNotFoundError, ConfigError) as err:
        parser.exit(2, f"error: {err}\n")
    print(
        f"{args.split}: loss {m['val_loss']:.4f} | perplexity {math.exp(m['val_loss']):.2f} | "
        f"step {m['step']} | tgt_len {args.tgt_len} mem_len {args.mem_len} clamp_len {args.clamp_len} "
        f"same_length {args.same_length}"
    )


if __name__ == "__main__":
    main()
