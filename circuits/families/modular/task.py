"""Binary operations mod p (Power et al. 2022): input `a b =`, answer op(a, b) mod p.

All p^2 pairs are enumerated a-major (row a*p + b), so any per-example quantity
reshapes to a (p, p) grid over (a, b). Pairs with no defined answer (y = 0 for
division) keep label -1 and are in no split.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from interp.config import ConfigError, TaskConfig
from interp.tasks.base import TaskData

OpFn = Callable[[Tensor, Tensor, int], Tensor]


def _inverse(y: Tensor, p: int) -> Tensor:
    # Fermat: y^(p-2) is the inverse of y mod prime p; computed by square-and-multiply.
    result = torch.ones_like(y)
    base, exponent = y % p, p - 2
    while exponent:
        if exponent & 1:
            result = result * base % p
        base = base * base % p
        exponent >>= 1
    return result


def _div(x: Tensor, y: Tensor, p: int) -> Tensor:
    out = x * _inverse(y, p) % p
    return torch.where(y == 0, torch.full_like(out, -1), out)


OPERATIONS: dict[str, tuple[str, OpFn]] = {
    "add": ("x+y", lambda x, y, p: (x + y) % p),
    "sub": ("x-y", lambda x, y, p: (x - y) % p),
    "mul": ("x*y", lambda x, y, p: (x * y) % p),
    "div": ("x/y", _div),
    "sum_sq": ("x^2+y^2", lambda x, y, p: (x * x + y * y) % p),
    "quad": ("x^2+xy+y^2", lambda x, y, p: (x * x + x * y + y * y) % p),
    "quad_x": ("x^2+xy+y^2+x", lambda x, y, p: (x * x + x * y + y * y + x) % p),
    "cube_xy": ("x^3+xy", lambda x, y, p: (x * x % p * x + x * y) % p),
    "cubic": ("x^3+xy^2+y", lambda x, y, p: (x * x % p * x + x * (y * y % p) + y) % p),
    "div_or_sub": (
        "x/y if y odd else x-y",
        lambda x, y, p: torch.where(y % 2 == 1, _div(x, y, p), (x - y) % p),
    ),
}


def apply_operation(operation: str, x: Tensor, y: Tensor, p: int) -> Tensor:
    """op(x, y) mod p, or -1 where undefined."""
    return OPERATIONS[operation][1](x.long(), y.long(), p)


def build_modular(config: TaskConfig) -> TaskData:
    p = config.p
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    equals = torch.full_like(a, config.equals_token)
    tokens = torch.stack([a, b, equals], dim=1)
    labels = apply_operation(config.operation, a, b, p)

    valid = torch.nonzero(labels >= 0).squeeze(1)
    generator = torch.Generator().manual_seed(config.split_seed)
    if config.shuffle_labels:
        labels = labels.clone()
        labels[valid] = torch.randint(0, p, (len(valid),), generator=generator)
    order = valid[torch.randperm(len(valid), generator=generator)]
    n_train = int(config.train_frac * len(valid))
    if n_train < 1 or n_train >= len(valid):
        # ConfigError (a ValueError) so the CLI reports it like any other bad field.
        raise ConfigError(
            f"task.train_frac: {config.train_frac} leaves {n_train} of {len(valid)} examples for "
            "training "
            f"(p={p}); both splits need at least one"
        )
    # Validation pairs come from the held-out pairs, after the training ones: the training
    # set is the same whatever val_frac is.
    n_val = int(config.val_frac * (len(valid) - n_train))
    if config.val_frac > 0 and not 1 <= n_val < len(valid) - n_train:
        raise ConfigError(
            f"task.val_frac: {config.val_frac} of the {len(valid) - n_train} held-out pairs leaves "
            f"{n_val} for validation (p={p}); validation and test need at least one each"
        )
    train = order[:n_train]
    if config.train_subset:
        if config.train_subset > n_train:
            raise ConfigError(
                f"task.train_subset: {config.train_subset} is more than the {n_train} training "
                "pairs"
            )
        # One seeded order of the training pairs, cut at N: smaller subsets nest in larger ones.
        generator = torch.Generator().manual_seed(
            config.split_seed + 1 + 1_000_003 * config.subset_seed
        )
        train = train[torch.randperm(n_train, generator=generator)[: config.train_subset]]
    splits = {"train": train.sort().values}
    if n_val:
        splits["val"] = order[n_train : n_train + n_val].sort().values
    splits["test"] = order[n_train + n_val :].sort().values
    names = tuple(str(i) for i in range(p)) + ("=",)
    return TaskData(tokens=tokens, labels=labels, splits=splits, token_names=names)
