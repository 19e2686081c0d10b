"""Every task × optimizer preset composes to the authors' released values (experiments/released.py), and the
docs' preset tables are generated from that table."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments import released

REPO = Path(__file__).resolve().parents[1]
PAIRS = [(task, opt) for task in released.tasks() for opt in released.optimizers(task)]


@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ramda.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        yield lambda overrides: OmegaConf.to_container(
            hydra_compose("train", overrides=overrides), resolve=True
        )


def mismatches(cfg: dict, values: list[released.Value]) -> list[str]:
    """The released values ``cfg`` does not hold (equal, and of the same type: 1 is not 1.0 nor True)."""
    wrong = []
    for v in values:
        node = cfg
        for part in v.key.split("."):
            node = node[part]
        if node != v.value or type(node) is not type(v.value):
            wrong.append(f"{v.key}: composed {node!r}, released {v.value!r} ({v.source})")
    return wrong


@pytest.mark.parametrize(("task", "optimizer"), PAIRS)
def test_preset_composes_to_every_released_value(compose, task: str, optimizer: str) -> None:
    cfg = compose([f"task={task}", f"optimizer={optimizer}"])
    assert cfg["task"]["name"] == task and cfg["optimizer"]["name"] == optimizer
    wrong = mismatches(cfg, released.values(task, optimizer))
    assert not wrong, "\n".join(wrong)


def test_the_table_covers_what_the_issue_lists() -> None:
    """The settings every preset must pin: a table that lost one would let its preset drift unchecked."""
    common = {
        "optimizer.lr",
        "regularizer.lam",
        "trainer.precision",
        "trainer.lr_schedule",
        "task.batch_size",
    }
    common |= {"task.grad_clip", "trainer.milestones"}
    for task, optimizer in PAIRS:
        keys = {v.key for v in released.values(task, optimizer)}
        assert common <= keys, (task, optimizer, common - keys)
        if optimizer in ("ramda", "proxgen"):
            assert {"optimizer.stop", "optimizer.rtol", "optimizer.max_iters", "optimizer.eps"} <= keys
        assert ("trainer.max_steps" in keys) == (task == "wikitext103")
    assert {v.key for v in released.SHARED["wikitext103"]} >= {
        "task.cutoffs",
        "task.tie_projs",
        "task.div_val",
    }
    assert "task.mask_padding" in {v.key for v in released.SHARED["ljspeech"]}
    assert "task.label_smoothing" in {v.key for v in released.SHARED["imagenet"]}


def test_a_value_off_by_a_little_or_of_another_type_is_caught(compose) -> None:
    cfg = compose(["task=imagenet", "optimizer=ramda", "regularizer.lam=4.000001e-7", "trainer.epochs=160"])
    values = released.values("imagenet", "ramda")
    assert [w.split(":")[0] for w in mismatches(cfg, values)] == ["regularizer.lam"]
    cfg["trainer"]["epochs"] = 160.0
    cfg["regularizer"]["lam"] = 4e-7
    assert [w.split(":")[0] for w in mismatches(cfg, values)] == ["trainer.epochs"]


@pytest.mark.parametrize("task", released.tasks())
def test_docs_tables_are_generated_from_the_table(task: str) -> None:
    path = REPO / "docs" / "tasks" / f"{task}.md"
    text = path.read_text(encoding="utf-8")
    assert released.render_into(text, task) == text, f"stale: python -m experiments.released --write ({path})"
