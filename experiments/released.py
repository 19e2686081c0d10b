"""The authors' released settings, value by value, each with the released file it comes from
(github.com/ismoptgroup/ramda_exp, paths below are inside that repository).

Every value is a dotted key of the composed run config (``python train.py --cfg job task=<t> optimizer=<o>``)
and the value the released scripts run with: a flag of the launch script, a default of the training script, a
default of the released optimizer class (``Core/optimizer.py``) where the script passes none.
``tests/test_released_presets.py`` composes every task × optimizer preset and checks each value;
``python -m experiments.released --write`` regenerates the preset tables of ``docs/tasks/<task>.md`` from it.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPOSITORY = "https://github.com/ismoptgroup/ramda_exp"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "tasks"


@dataclass(frozen=True)
class Value:
    """``key`` of the run config takes ``value``, as in the released file ``source``."""

    key: str
    value: Any
    source: str


def _values(source: str, **settings: Any) -> tuple[Value, ...]:
    """``settings`` with ``__`` for the dots of the config keys, all from ``source``."""
    return tuple(Value(key.replace("__", "."), value, source) for key, value in settings.items())


_CLASSES = "Core/optimizer.py"
_SOLVER = "Core/solver.py"
_SCHEDULER = "Core/scheduler.py"
# The released classes' defaults for the arguments the training scripts do not pass.
_DEFAULTS: dict[str, tuple[Value, ...]] = {
    "proxsgd": _values(_CLASSES, optimizer__momentum=0.1),
    "rmda": _values(_CLASSES, optimizer__momentum=1e-2)
    + _values(_SCHEDULER, trainer__momentum_start_epoch=None),
    "ramda": _values(_CLASSES, optimizer__momentum=1e-2, optimizer__eps=1e-6, optimizer__max_iters=100)
    + _values(_SOLVER, optimizer__stop="objective", optimizer__rtol=1e-8)
    + _values(_SCHEDULER, trainer__momentum_start_epoch=None),
    "proxgen": _values(
        _CLASSES, optimizer__betas=[0.9, 0.999], optimizer__eps=1e-8, optimizer__weight_decay=0.0
    )
    + _values(_CLASSES, optimizer__max_iters=100)
    + _values(_SOLVER, optimizer__stop="objective", optimizer__rtol=1e-8),
    "adam": (),
    "msgd": (),
}

_IMAGENET = "ImageNet/train.py"
_TACOTRON = "Tacotron2/train.py"
_TXL = "Transformer-XL/pytorch/train.py"

SHARED: dict[str, tuple[Value, ...]] = {
    "imagenet": _values(
        _IMAGENET,
        task__model="resnet50",
        task__label_smoothing=0.1,
        trainer__epochs=160,
        trainer__milestones=[40, 80, 120],
        trainer__gamma=0.1,
        trainer__lr_schedule="stagewise",
        task__grad_clip=0.0,
        task__drop_last=False,
    )
    + _values("ImageNet/train.py (32 per process), ImageNet/*.sh (horovodrun -np 8)", task__batch_size=256)
    + _values("ImageNet/*.sh (--use-mixed-precision)", trainer__precision="fp16"),
    "ljspeech": _values(
        _TACOTRON,
        task__batch_size=64,
        trainer__epochs=1000,
        trainer__milestones=[300, 600],
        trainer__gamma=0.1,
        trainer__lr_schedule="stagewise",
        task__grad_clip=1.0,
        task__uniform_bn_weight=True,
        trainer__precision="fp32",
    )
    + _values("Tacotron2/tacotron2/arg_parser.py", task__mask_padding=False),
    "wikitext103": _values(
        "Transformer-XL/pytorch/*_wt103_base.yaml",
        task__n_layer=16,
        task__d_model=512,
        task__n_head=8,
        task__d_head=64,
        task__d_inner=2048,
        task__dropout=0.1,
        task__dropatt=0.0,
        task__tgt_len=192,
        task__mem_len=192,
        task__eval_tgt_len=192,
        task__batch_size=64,
        task__roll=True,
        trainer__max_steps=400_000,
        trainer__eval_every_steps=5000,
        trainer__precision="fp32",
    )
    + _values(
        _TXL,
        task__eval_mem_len=192,
        task__eval_batch_size=16,
        task__cutoffs=[19997, 39997, 199997],
        task__div_val=1,
        task__tie_weight=True,
        task__tie_projs=[False, True, True, True],
        task__clamp_len=-1,
        task__same_length=False,
        task__grad_clip=0.25,
    ),
}

_IN = "ImageNet/{}_ResNet50_on_ImageNet.sh"
_LJ = "Tacotron2/{}_Tacotron2_on_LJSpeech.sh"
_WT = "Transformer-XL/pytorch/{}_wt103_base.yaml"
_COSINE = {"trainer.lr_schedule": "cosine", "trainer.milestones": []}
_STAGES = {"trainer.lr_schedule": "stagewise", "trainer.milestones": [100_000, 200_000, 300_000]}


def _own(source: str, settings: dict[str, Any]) -> tuple[Value, ...]:
    return tuple(Value(key, value, source) for key, value in settings.items())


OWN: dict[str, dict[str, tuple[Value, ...]]] = {
    "imagenet": {
        "msgd": _own(
            _IN.format("MSGD"), {"optimizer.lr": 0.1, "optimizer.weight_decay": 1e-4, "regularizer.lam": 0.0}
        )
        + _values(_IMAGENET, optimizer__momentum=0.9),
        "proxsgd": _own(_IN.format("ProxSGD"), {"optimizer.lr": 0.1, "regularizer.lam": 1.25e-5}),
        "proxgen": _own(_IN.format("ProxAdamW"), {"optimizer.lr": 1e-3, "regularizer.lam": 1.3e-7}),
        "rmda": _own(
            _IN.format("RMDA"), {"optimizer.lr": 1.0, "optimizer.momentum": 0.1, "regularizer.lam": 1.35e-5}
        ),
        "ramda": _own(
            _IN.format("RAMDA"), {"optimizer.lr": 1e-2, "optimizer.momentum": 1e-2, "regularizer.lam": 4e-7}
        ),
    },
    "ljspeech": {
        "adam": _own(
            _LJ.format("Adam"),
            {"optimizer.lr": 1e-3, "optimizer.weight_decay": 1e-6, "regularizer.lam": 0.0},
        ),
        "proxsgd": _own(_LJ.format("ProxSGD"), {"optimizer.lr": 1.0, "regularizer.lam": 2.5e-6}),
        "proxgen": _own(_LJ.format("ProxAdamW"), {"optimizer.lr": 1e-3, "regularizer.lam": 8e-7}),
        "rmda": _own(_LJ.format("RMDA"), {"optimizer.lr": 2.5, "regularizer.lam": 1e-6}),
        "ramda": _own(_LJ.format("RAMDA"), {"optimizer.lr": 2.5e-3, "regularizer.lam": 6e-7}),
    },
    "wikitext103": {
        "adam": _own(_WT.format("Adam"), {"optimizer.lr": 2.5e-4, "regularizer.lam": 0.0, **_COSINE})
        + _values(_TXL, optimizer__weight_decay=0.0),
        "proxsgd": _own(_WT.format("ProxSGD"), {"optimizer.lr": 10.0, "regularizer.lam": 2.5e-7, **_COSINE}),
        "proxgen": _own(
            _WT.format("ProxAdamW"), {"optimizer.lr": 2.5e-4, "regularizer.lam": 1.75e-7, **_COSINE}
        ),
        "rmda": _own(
            _WT.format("RMDA"),
            {"optimizer.lr": 25.0, "regularizer.lam": 1.65e-7, "trainer.gamma": 0.1, **_STAGES},
        ),
        "ramda": _own(
            _WT.format("RAMDA"),
            {"optimizer.lr": 5e-3, "regularizer.lam": 1.25e-7, "trainer.gamma": 0.1, **_STAGES},
        ),
    },
}


def tasks() -> list[str]:
    return list(OWN)


def optimizers(task: str) -> list[str]:
    return list(OWN[task])


def values(task: str, optimizer: str) -> list[Value]:
    """Every released value of ``optimizer`` on ``task``: the task's shared settings, the class defaults,
    then the optimizer's own (a later value of the same key wins)."""
    merged = {v.key: v for v in (*SHARED[task], *_DEFAULTS[optimizer], *OWN[task][optimizer])}
    return list(merged.values())


# ----------------------------------------------------------------------------------------- rendering

_COLUMNS = {
    "lr": "optimizer.lr",
    "momentum": "optimizer.momentum",
    "β": "optimizer.betas",
    "ε": "optimizer.eps",
    "weight decay": "optimizer.weight_decay",
    "λ": "regularizer.lam",
    "lr schedule": "trainer.lr_schedule",
    "milestones": "trainer.milestones",
    "solver": "optimizer.stop",
}
_NAMES = {
    "adam": "Adam",
    "msgd": "MSGD",
    "proxsgd": "ProxSGD",
    "proxgen": "ProxGen",
    "rmda": "RMDA",
    "ramda": "RAMDA",
}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown(task: str) -> str:
    """The preset tables of ``task``: its shared settings, then one row per optimizer, with the files."""
    own_keys = {v.key for opt in OWN[task] for v in OWN[task][opt]}
    shared = [v for v in SHARED[task] if v.key not in own_keys]
    lines = ["| setting | value | released file |", "|---|---|---|"]
    lines += [f"| `{v.key}` | {_show(v.value)} | `{v.source}` |" for v in shared]
    lines += ["", "| optimizer | " + " | ".join(_COLUMNS) + " | released files |"]
    lines.append("|---" * (len(_COLUMNS) + 2) + "|")
    for opt in OWN[task]:
        vals = {v.key: v for v in values(task, opt)}
        cells = [_show(vals[key].value) if key in vals else "" for key in _COLUMNS.values()]
        files = sorted(
            {f"`{v.source}`" for v in vals.values() if v.key.startswith(("optimizer.", "regularizer."))}
        )
        lines.append(f"| {_NAMES[opt]} | " + " | ".join(cells) + " | " + ", ".join(files) + " |")
    return "\n".join(lines) + "\n"


BEGIN = "<!-- released-values:begin (python -m experiments.released --write) -->"
END = "<!-- released-values:end -->"


def render_into(text: str, task: str) -> str:
    """``text`` with the block between :data:`BEGIN` and :data:`END` replaced by :func:`markdown`."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"docs/tasks/{task}.md has no released-values block ({BEGIN} … {END})")
    return pattern.sub(lambda _: f"{BEGIN}\n{markdown(task)}{END}", text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print or write the released-values tables.")
    parser.add_argument("--write", action="store_true", help="update the tables in docs/tasks/<task>.md")
    args = parser.parse_args(argv)
    if not args.write:
        for task in tasks():
            print(f"## {task}\n\n{markdown(task)}")
        return
    paths = {task: DOCS / f"{task}.md" for task in tasks()}
    texts = {task: render_into(path.read_text(encoding="utf-8"), task) for task, path in paths.items()}
    for task, path in paths.items():
        path.write_text(texts[task], encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
