"""The comparison family (Wang et al. 2024, ANCHORS §2): `attr e1 e2` -> one of `< = >`
by the ordinal values of the two entities, with the values v1, v2 as hidden intermediates.

Declared here: the config (`ComparisonTask`), the `comparison` preset, the data
(`circuits.families.entity.comparison_data`), the counterfactual swaps (e1, e2, and the same-value
control),
the logit-lens and probe targets (v1 at e1, v2 at e2) and the circuit score's
value-invariance control (`circuits.families.entity.measures` explains the score).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from circuits.families.entity.family import EntityFamily, EntityTask
from circuits.families.entity.two_hop import ENTITY_MODEL, ENTITY_TRAIN
from interp.config import RunConfig
from interp.config_base import check
from interp.registry import register

POS_ATTR, POS_E1, POS_E2 = 0, 1, 2


@dataclass(frozen=True)
class ComparisonTask(EntityTask):
    """Comparisons of ordinal attribute values (random, or from `kb_file`), `attr e1 e2` -> < =
    >."""

    kind = "comparison"
    #: Number of attributes and of ordinal values per attribute (ignored with kb_file).
    n_attributes: int = 10
    n_values: int = 20

    def _validate_sizes(self) -> None:
        check(self.n_attributes >= 1, "task.n_attributes", f"must be >= 1, got {self.n_attributes}")
        check(self.n_values >= 2, "task.n_values", f"must be >= 2, got {self.n_values}")

    def entity_sizes(self) -> tuple[int, int, int]:
        if self.kb_file:
            from circuits.families.entity.kb_file import kb_sizes

            return kb_sizes(self.kb_file, "values")
        return self.n_entities, self.n_attributes, self.n_values


class ComparisonFamily(EntityFamily):
    kind = "comparison"
    config_class = ComparisonTask
    title = "comparison of entities' attribute values"
    patch_swaps = ("e1", "e2")
    probe_targets = {"v1": POS_E1, "v2": POS_E2}
    intermediate = "v1"
    #: three answers
    position_names = ("attr", "e1", "e2 (last)")
    chance = 1 / 3

    def presets(self) -> dict[str, RunConfig]:
        """`comparison`: |E| 200, φ 14.4, the two-hop recipe at Wang et al.'s batch of 512 with
        weight decay 0.3, 24k steps (docs/experiments.md §3: it groks past 8k steps, systematic
        OOD comparison included; ~1 h on one core)."""
        task = ComparisonTask(
            n_entities=200,
            n_attributes=10,
            n_values=20,
            ood_frac=0.1,
            phi=14.4,
            test_id_frac=0.1,
            split_seed=0,
        )
        train = replace(
            ENTITY_TRAIN, steps=24_000, batch_size=512, weight_decay=0.3, ckpt_every=200
        )
        return {
            "comparison": RunConfig(name="comparison", task=task, model=ENTITY_MODEL, train=train)
        }

    def build(self, config: ComparisonTask):
        from circuits.families.entity.comparison_data import build_comparison

        return build_comparison(config)

    def vocab(self, task):
        from circuits.families.entity.vocab import EntityVocab

        n_e, n_a = task.extras["kb_value"].shape
        return EntityVocab(n_e, n_a, len(task.token_names) - n_e - n_a - 4)

    def swap_examples(self, task, index, swap: str, generator):
        import torch

        from circuits.families.entity.measures import Counterfactual, pick

        if swap not in ("e1", "e2", "e1_same_value"):
            raise ValueError(f"swap: {swap!r} is not one of e1, e2, e1_same_value for comparison")
        vocab = self.vocab(task)
        kb = task.extras["kb_value"]
        a, v1, v2 = (task.extras[k][index] for k in ("attribute", "v1", "v2"))
        tokens = task.tokens[index]
        cf_tokens = tokens.clone()
        other = v2 if swap != "e2" else v1
        sign = torch.sign(v1 - v2)
        v_alt = kb[:, a].T  # [batch, entity]
        sign_alt = (
            torch.sign(other[:, None] - v_alt)
            if swap == "e2"
            else torch.sign(v_alt - other[:, None])
        )
        if swap == "e1_same_value":  # another entity with e1's value: the answer must not change
            e1 = task.extras["e1"][index]
            valid = (v_alt == v1[:, None]) & (torch.arange(v_alt.shape[1])[None] != e1[:, None])
        else:
            valid = (v_alt >= 0) & (sign_alt != sign[:, None])
        chosen = pick(valid, generator)
        position = POS_E2 if swap == "e2" else POS_E1
        cf_tokens[:, position] = vocab.entity(chosen.clamp(min=0))
        cf_answer = vocab.answer(sign_alt.gather(1, chosen.clamp(min=0)[:, None]).squeeze(1))
        keep = chosen >= 0
        return Counterfactual(index[keep], tokens[keep], cf_tokens[keep], cf_answer[keep], position)

    def lens_targets(self, task, index) -> dict:
        from probes.logit_lens import LensTarget

        vocab = self.vocab(task)
        return {
            "v1": LensTarget(POS_E1, vocab.value(task.extras["v1"][index]), vocab.value_tokens),
            "v2": LensTarget(POS_E2, vocab.value(task.extras["v2"][index]), vocab.value_tokens),
            "answer": LensTarget(POS_E2, task.labels[index], vocab.answer_tokens),
        }

    def score_examples(self, model, task, index, seed: int):
        import torch

        from circuits.families.entity.measures import (
            POS_MID,
            counterfactuals,
            no_score,
            score_from_mediation,
        )
        from probes.patching import mediation

        # the examples that have a control
        same = counterfactuals(self, task, index, swap="e1_same_value", seed=seed + 1)
        cf = counterfactuals(self, task, same.index, swap="e1", seed=seed)
        if len(cf.index) == 0:
            return no_score()
        clean = task.labels[cf.index]
        # Value invariance: what the e1 state carries beyond its value (identity, read by a
        # lookup) also moves the answer when e1 is swapped for an entity of the same value.
        keep = torch.isin(same.index, cf.index)
        control = mediation(model, cf.clean_tokens, same.tokens[keep], clean, cf.answer, POS_MID)
        return score_from_mediation(model, cf, clean, control=control.indirect_abs)


FAMILY = register(ComparisonFamily())
