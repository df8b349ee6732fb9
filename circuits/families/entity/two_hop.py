"""The two-hop composition family (Wang et al. 2024, ANCHORS §2): `h r1 r2` -> t over a
knowledge graph, with the bridge entity b = tail(h, r1) as the hidden intermediate.

Declared here: the config (`TwoHopTask`), the `two-hop` preset, the data
(`circuits.families.entity.two_hop_data`), the counterfactual swaps (head, r2), the logit-lens and
probe
targets (the bridge at r1) and the circuit score's chance-corrected metric and
significance gate (`circuits.families.entity.measures` explains the score).
"""

from __future__ import annotations

from dataclasses import dataclass

from circuits.families.entity.family import EntityFamily, EntityTask
from interp.config import ModelConfig, RunConfig, TrainConfig
from interp.config_base import check
from interp.registry import register

POS_HEAD, POS_R1, POS_R2 = 0, 1, 2


@dataclass(frozen=True)
class TwoHopTask(EntityTask):
    """Composition over a random knowledge graph (or `kb_file`), `h r1 r2` -> t."""

    kind = "two_hop"
    #: Number of relations (ignored with kb_file).
    n_relations: int = 20
    #: Distinct relations per entity, each to a random entity (ignored with kb_file).
    out_degree: int = 10

    def _validate_sizes(self) -> None:
        check(self.n_relations >= 1, "task.n_relations", f"must be >= 1, got {self.n_relations}")
        check(
            1 <= self.out_degree <= self.n_relations,
            "task.out_degree",
            f"must be in [1, n_relations={self.n_relations}], got {self.out_degree}",
        )

    def entity_sizes(self) -> tuple[int, int, int]:
        if self.kb_file:
            from circuits.families.entity.kb_file import kb_sizes

            return kb_sizes(self.kb_file, "facts")
        return self.n_entities, self.n_relations, 0


#: The 4-layer pre-LN transformer with tied embeddings of both entity families.
ENTITY_MODEL = ModelConfig(
    n_layers=4,
    d_model=128,
    n_heads=4,
    d_head=32,
    d_mlp=512,
    act_fn="gelu",
    normalization="LN",
    tied_embeddings=True,
    seed=0,
)
ENTITY_TRAIN = TrainConfig(
    steps=30_000,
    lr=1e-3,
    weight_decay=1.0,
    beta1=0.9,
    beta2=0.98,
    warmup_steps=100,
    batch_size=128,
    grad_clip=1.0,
    ckpt_every=200,
    ckpt_log_until=1000,
)


class TwoHopFamily(EntityFamily):
    kind = "two_hop"
    config_class = TwoHopTask
    title = "two-hop composition over a knowledge graph"
    patch_swaps = ("head", "r2")
    probe_targets = {"bridge": POS_R1}
    intermediate = "bridge"
    #: 1/|E|, which is ≤ 0.05 for any knowledge base worth training on; taken as 0.
    position_names = ("h", "r1", "r2 (last)")
    chance = 0.0

    def presets(self) -> dict[str, RunConfig]:
        """`two-hop`: |E| = 100, phi = 7.2, 30k steps (`interp.presets` has the numbers)."""
        task = TwoHopTask(
            n_entities=100,
            n_relations=20,
            out_degree=10,
            ood_frac=0.1,
            phi=7.2,
            test_id_frac=0.1,
            split_seed=0,
        )
        return {
            "two-hop": RunConfig(name="two-hop", task=task, model=ENTITY_MODEL, train=ENTITY_TRAIN)
        }

    def build(self, config: TwoHopTask):
        from circuits.families.entity.two_hop_data import build_two_hop

        return build_two_hop(config)

    def vocab(self, task):
        from circuits.families.entity.vocab import EntityVocab

        return EntityVocab(*task.extras["kb_tail"].shape)

    def swap_examples(self, task, index, swap: str, generator):
        import torch

        from circuits.families.entity.measures import Counterfactual, pick

        vocab = self.vocab(task)
        kb = task.extras["kb_tail"]
        r1, r2, b = (task.extras[k][index] for k in ("r1", "r2", "bridge"))
        t = task.labels[index]
        tokens = task.tokens[index]
        cf_tokens = tokens.clone()
        if swap == "head":
            b_alt = kb[:, r1].T  # [batch, entity] bridge of (h', r1)
            t_alt = torch.where(b_alt >= 0, kb[b_alt.clamp(min=0), r2[:, None]], -1)
            valid = (b_alt >= 0) & (b_alt != b[:, None]) & (t_alt >= 0) & (t_alt != t[:, None])
            chosen = pick(valid, generator)
            cf_tokens[:, POS_HEAD] = vocab.entity(chosen.clamp(min=0))
            position = POS_HEAD
        elif swap == "r2":
            t_alt = kb[b]  # [batch, relation]
            valid = (t_alt >= 0) & (t_alt != t[:, None])
            chosen = pick(valid, generator)
            cf_tokens[:, POS_R2] = vocab.relation(chosen.clamp(min=0))
            position = POS_R2
        else:
            raise ValueError(f"swap: {swap!r} is not one of head, r2 for two_hop")
        cf_answer = t_alt.gather(1, chosen.clamp(min=0)[:, None]).squeeze(1)
        keep = chosen >= 0
        return Counterfactual(index[keep], tokens[keep], cf_tokens[keep], cf_answer[keep], position)

    def lens_targets(self, task, index) -> dict:
        from probes.logit_lens import LensTarget

        vocab = self.vocab(task)
        return {
            "bridge": LensTarget(POS_R1, task.extras["bridge"][index], vocab.entity_tokens),
            "answer": LensTarget(POS_R2, task.labels[index], vocab.entity_tokens),
        }

    def score_examples(self, model, task, index, seed: int):
        from circuits.families.entity.measures import (
            MIN_Z,
            counterfactuals,
            no_score,
            score_from_mediation,
        )

        cf = counterfactuals(self, task, index, swap="head", seed=seed)
        if len(cf.index) == 0:
            return no_score()
        clean = task.labels[cf.index]
        # Significance gate: an indirect effect within MIN_Z standard errors of 0 is noise (a
        # memorizer's checkpoints showed single-layer blips of up to 0.13 that were < 2 SE).
        return score_from_mediation(
            model,
            cf,
            clean,
            metric=specific_metric(self.vocab(task), clean, cf.answer),
            min_z=MIN_Z,
        )


def specific_metric(vocab, clean_answer, counterfactual_answer):
    """two_hop's chance-corrected metric: the mean logit of the other entities minus the
    counterfactual answer's logit (lower = the answer has moved specifically to t').

    The plain logit difference logit[t] − logit[t'] also falls when a patch merely disrupts
    the clean answer t, which any model that reads part of the head's identity at r1 shows
    (a random-answer memorizer scored ~0.2 with it). Against the other entities' mean, a
    disruption moves nothing; only a state that carries the bridge b' raises t' above them.
    """
    entities = vocab.entity_tokens
    n_other = len(entities) - 2

    def metric(logits):
        logits = logits.double()
        t, t_alt = (
            logits.gather(1, clean_answer[:, None]),
            logits.gather(1, counterfactual_answer[:, None]),
        )
        others = (logits[:, entities].sum(dim=1, keepdim=True) - t - t_alt) / n_other
        return (others - t_alt).squeeze(1)

    return metric


FAMILY = register(TwoHopFamily())
