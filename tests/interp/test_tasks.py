"""Modular tasks: labels against a plain-Python reference, splits, determinism."""

from __future__ import annotations

import pytest
import torch

from interp.config import task_config
from interp.tasks import build_task

REFERENCE = {
    "add": lambda x, y, p: (x + y) % p,
    "sub": lambda x, y, p: (x - y) % p,
    "mul": lambda x, y, p: (x * y) % p,
    "div": lambda x, y, p: None if y == 0 else (x * pow(y, -1, p)) % p,
    "sum_sq": lambda x, y, p: (x * x + y * y) % p,
    "quad": lambda x, y, p: (x * x + x * y + y * y) % p,
    "quad_x": lambda x, y, p: (x * x + x * y + y * y + x) % p,
    "cube_xy": lambda x, y, p: (x**3 + x * y) % p,
    "cubic": lambda x, y, p: (x**3 + x * y * y + y) % p,
    "div_or_sub": lambda x, y, p: (x * pow(y, -1, p)) % p if y % 2 == 1 else (x - y) % p,
}


@pytest.mark.parametrize("operation", sorted(REFERENCE))
def test_labels_match_reference(operation):
    p = 13
    task = build_task(task_config(operation=operation, p=p, train_frac=0.5))
    for row in range(task.n_examples):
        a, b, eq = task.tokens[row].tolist()
        assert eq == p
        expected = REFERENCE[operation](a, b, p)
        assert task.labels[row].item() == (-1 if expected is None else expected), (operation, a, b)


def test_split_is_a_partition_of_valid_examples_with_nanda_sizes():
    task = build_task(task_config(operation="add", p=113, train_frac=0.3))
    train, test = task.splits["train"], task.splits["test"]
    assert (len(train), len(test)) == (3830, 8939)
    assert len(set(train.tolist()) & set(test.tolist())) == 0
    assert len(train) + len(test) == 113 * 113


def test_division_excludes_zero_divisor():
    task = build_task(task_config(operation="div", p=7, train_frac=0.5))
    everything = torch.cat([task.splits["train"], task.splits["test"]])
    assert len(everything) == 7 * 6
    assert (task.tokens[everything, 1] != 0).all()


def test_split_is_deterministic_in_the_seed():
    a = build_task(task_config(p=31, split_seed=5)).splits["train"]
    b = build_task(task_config(p=31, split_seed=5)).splits["train"]
    c = build_task(task_config(p=31, split_seed=6)).splits["train"]
    assert torch.equal(a, b) and not torch.equal(a, c)
