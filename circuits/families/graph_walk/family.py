"""The random-walk language-modelling family (Barkeshli, Alfarano, Gromov 2026; ANCHORS §3):
predict the next node of a random walk on a graph, at every position of the sequence.

The walk has a known answer (`circuits.families.graph_walk.walks`): its entropy rate H is the
irreducible loss, and the true transition matrix gives every token's exact log-probability,
so the model's **excess loss** over H is measured with the paired estimator on fixed test
walks: the mean over tokens of log P(next | current) − log q_model(next | current), with its
standard error over walks (`excess_loss`, `excess_loss_se`). Subtracting H from a sampled
loss instead is noise-dominated below ~1e-3 nats (ANCHORS §4).

Data modes (`task.data`): ``fresh`` draws new walks at every step from a seeded generator
(one epoch, nothing stored; the training split is a fixed sample of walks used only to
evaluate), ``fixed`` trains on a corpus of `corpus_walks` walks repeated for as many epochs
as `train.steps` asks (the infinite-compute study; epochs = steps × batch / corpus_walks).
Tokens seen = steps × batch × context. A fixed corpus also gets a ``val`` split:
`eval_walks` more walks from their own seed, never trained on and never the test walks, which
is what the `best` pointer (lowest `val_loss`), early stopping and a sweep's search select on.

Phases are read off the excess loss (accuracy is capped near 1/k): memorization until it
falls to 0.1 nats, then convergence until 0.01 nats, then stable. A collapse is read off the
training loss (`collapse_rule`), not the accuracy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from circuits.analyses.phases import MilestoneSpec
from circuits.families.base import AnalyzedFamily
from circuits.viz.views import ReportView
from interp.config import ModelConfig, RunConfig, TrainConfig
from interp.config_base import TaskConfig, check
from interp.registry import CIRCUITS_PART, LLC_PART, AnalysisPart, register

GraphKind = Literal["er", "ba", "file"]
DataMode = Literal["fresh", "fixed"]


@dataclass(frozen=True)
class GraphWalkTask(TaskConfig):
    """Next-node prediction on random walks over a graph (module docstring)."""

    kind = "graph_walk"
    #: er: Erdős–Rényi G(n_nodes, n_edges); ba: Barabási–Albert (attach edges per new node);
    #: file: `edge_file`, one `u v` per line. The largest connected component is kept.
    graph: GraphKind = "er"
    n_nodes: int = 128
    n_edges: int = 640
    attach: int = 5
    edge_file: str = ""
    graph_seed: int = 0
    #: transition weight of a neighbour ∝ its degree^kappa (0: the unbiased walk)
    kappa: float = 0.0
    #: tokens the model sees per sequence (a walk has context + 1 nodes)
    context: int = 50
    data: DataMode = "fresh"
    #: fixed mode: the corpus, in walks (its tokens = corpus_walks × context)
    corpus_walks: int = 1000
    #: held-out walks for the test split (and, fresh mode, the training-split sample;
    #: fixed mode, as many validation walks besides)
    eval_walks: int = 256

    def __post_init__(self) -> None:
        check(self.n_nodes >= 2, "task.n_nodes", f"must be >= 2, got {self.n_nodes}")
        check(self.context >= 1, "task.context", f"must be >= 1, got {self.context}")
        check(self.eval_walks >= 2, "task.eval_walks", f"must be >= 2, got {self.eval_walks}")
        check(self.corpus_walks >= 1, "task.corpus_walks", f"must be >= 1, got {self.corpus_walks}")
        check(
            self.graph != "file" or bool(self.edge_file),
            "task.edge_file",
            "required with task.graph=file",
        )

    @property
    def d_vocab(self) -> int:
        return (
            walk_graph(self).n + walk_graph(self).dropped if self.graph == "file" else self.n_nodes
        )

    @property
    def d_vocab_out(self) -> int:
        return self.d_vocab

    @property
    def n_ctx(self) -> int:
        return self.context


@functools.lru_cache(maxsize=8)
def walk_graph(config: GraphWalkTask):
    """The config's graph (cached: configs are frozen). Node ids are the largest component's,
    renumbered 0..n-1."""
    from circuits.families.graph_walk import walks as gw

    if config.graph == "er":
        return gw.erdos_renyi(config.n_nodes, config.n_edges, config.graph_seed, config.kappa)
    if config.graph == "ba":
        return gw.barabasi_albert(config.n_nodes, config.attach, config.graph_seed, config.kappa)
    return gw.read_edge_list(config.edge_file, config.kappa)


def _walks(config: GraphWalkTask, n: int, seed: int):
    import torch

    from circuits.families.graph_walk.walks import sample_walks

    generator = torch.Generator().manual_seed(seed)

    walks = sample_walks(walk_graph(config), n, config.context + 1, generator)
    return walks[:, :-1], walks[:, 1:]


class GraphWalkFamily(AnalyzedFamily):
    kind = "graph_walk"
    config_class = GraphWalkTask
    title = "next-node prediction on random walks over a graph (scaling laws)"
    timeline_note = (
        "Phases are read off the excess loss over the walk's entropy rate (paired estimator "
        "on the test walks): memorization until it falls to 0.1 nats, convergence until 0.01 "
        "nats, then stable."
    )
    milestones = (
        MilestoneSpec("coarse", "excess ≤ 0.1 nats", "excess_loss", 0.1, below=True),
        MilestoneSpec("converged", "excess ≤ 0.01 nats", "excess_loss", 0.01, "coarse", True),
    )
    spans = (
        ("memorization", None, "coarse"),
        ("convergence", "coarse", "converged"),
        ("stable", "converged", None),
    )
    fit_milestone = "coarse"
    #: accuracy is capped near 1/degree here: the excess loss is what moves
    moving = ("excess_loss", "circuit_edges", "circuit_neurons", "llc")
    #: Scaling studies are statistical (seeds, intervals): the fused AdamW kernel's ~1e-6
    #: rounding does not matter there, its speed does (docs/benchmarks.md).
    fused_optimizer = True
    #: Members trained together (`interp train --seeds`): the batched full-sequence forward.
    stacked_forward = AnalyzedFamily.sequence_stacked_forward
    #: Accuracy is capped near 1/k: a fixed corpus's `best` checkpoint is its lowest val_loss.
    best_criterion = "val_loss"
    generalize_milestone = "converged"
    parts = (
        AnalysisPart("transitions", "Learned next-node distributions: KL per node against visits."),
        AnalysisPart("attention", "Attention to the current and the previous position, per head."),
        AnalysisPart(
            "attribution", "Direct logit attribution of the true next node, per component."
        ),
        CIRCUITS_PART,
        LLC_PART,
    )

    def analyze(self, run, parts, steps, *, workers, progress, figures=True):
        from circuits.families.graph_walk.analysis import analyze_walk_checkpoint
        from circuits.pipeline.analyze import analyze_each

        chosen = tuple(parts)

        def make():  # once per worker: the evaluator holds the graph's log-probabilities
            evaluators = self.evaluators(run.config)
            return lambda model, step: analyze_walk_checkpoint(
                model, step, run, self, chosen, evaluators
            )

        return analyze_each(run, self, chosen, steps, make, workers=workers, progress=progress)

    def leads(self, rows: list[dict[str, Any]]) -> dict[str, int | None]:
        """When the excess loss over H first falls to each milestone's level."""
        from circuits.analyses.phases import first_step

        ordered = sorted(rows, key=lambda r: r["step"])
        return {
            f"excess_loss<={spec.threshold:g}": first_step(
                ordered, spec.column, spec.threshold, below=True
            )
            for spec in self.milestones
        }

    def summary_facts(self, result) -> dict[str, Any]:
        """The walk's exact limits beside the model: the entropy rate H, the final paired excess
        loss over H with its standard error (test walks), and the add-½ count learner's excess
        on exactly the tokens the run trained on until its last analyzed step, knowing the
        graph or over all nodes (`limits.trained_counts`: cached on disk after the first
        replay)."""
        from circuits.families.graph_walk import limits as walk_limits

        last = result.checkpoints[-1].row
        config = result.config
        graph = walk_graph(config.task)
        counts = walk_limits.trained_counts(config, int(last["step"]))
        return {
            "entropy_rate": graph.entropy_rate(),
            "excess_loss": last.get("excess_loss"),
            "excess_loss_se": last.get("excess_loss_se"),
            "tokens_trained": int(counts.sum()),
            "count_excess_graph": walk_limits.kt_excess_loss(graph, counts, True),
            "count_excess_all": walk_limits.kt_excess_loss(graph, counts, False),
        }

    def summary_lines(self, info: dict[str, Any]) -> list[str]:
        excess, se = info.get("excess_loss"), info.get("excess_loss_se")
        lines = [f"entropy rate H {info['entropy_rate']:.4f} nats"]
        if excess is not None:
            lines.append(f"final excess loss over H: {excess:.4g} ± {se:.2g} nats (test walks)")
        lines.append(
            f"count-based learners on the same {info['tokens_trained']:,} transitions: "
            f"{info['count_excess_graph']:.4g} nats knowing the neighbours, "
            f"{info['count_excess_all']:.4g} over all nodes"
        )
        return lines

    def report_facts(self, result) -> list[tuple[str, str]]:
        info = self.summary_facts(result)
        return [
            (label, text)
            for label, text in zip(
                ("entropy rate H", "final excess over H", "count-based learners"),
                self.summary_lines(info),
            )
        ]

    def report_views(self, result, context) -> list[ReportView]:
        from circuits.families.graph_walk import figures as walk_figures
        from circuits.viz import attribution

        has_dla = any(c.dla is not None for c in result.checkpoints)
        dla_note = (
            "Each component's mean contribution to the centered logit of the true next node, "
            "at every position of 128 test walks (final LayerNorm frozen at its scale)."
        )
        return [
            ReportView("Learned transitions", lambda: walk_figures.plot_node_kl(result)),
            ReportView(
                "Attention to the current and previous node",
                lambda: walk_figures.plot_position_attention(result),
            ),
            ReportView(
                "Direct logit attribution of the next node",
                lambda: attribution.plot_attribution(result) if has_dla else None,
                dla_note,
            ),
            ReportView(
                "Direct logit attribution over training",
                lambda: attribution.plot_attribution_over_training(result) if has_dla else None,
            ),
        ]

    def presets(self) -> dict[str, RunConfig]:
        return {
            "graph-walk": RunConfig(
                name="graph-walk",
                task=GraphWalkTask(),
                model=ModelConfig(
                    n_layers=2,
                    d_model=32,
                    n_heads=2,
                    d_head=16,
                    d_mlp=128,
                    act_fn="gelu",
                    normalization="LN",
                    seed=0,
                ),
                # The best measured recipe at D = 3.28M tokens (docs/experiments.md §5: excess
                # 0.0089 nats over H, 3 seeds): the paper's weight decay, a cosine schedule.
                train=TrainConfig(
                    steps=2048,
                    lr=0.06,
                    weight_decay=0.01,
                    warmup_steps=205,
                    lr_schedule="cosine",
                    batch_size=32,
                    grad_clip=1.0,
                    ckpt_every=128,
                    ckpt_log_until=128,
                ),
            )
        }

    def build_task(self, config: GraphWalkTask):
        import torch

        from interp.tasks.base import TaskData

        test = _walks(config, config.eval_walks, config.split_seed)
        n_train = config.corpus_walks if config.data == "fixed" else config.eval_walks
        train = _walks(config, n_train, config.split_seed + 1)
        parts = [train, test]
        if config.data == "fixed":  # validation walks: their own seed, held out of the corpus
            parts.append(_walks(config, config.eval_walks, config.split_seed + 2))
        tokens = torch.cat([walks for walks, _ in parts])
        labels = torch.cat([next_nodes for _, next_nodes in parts])
        index = torch.arange(len(tokens))
        n_test = n_train + config.eval_walks
        splits = {"train": index[:n_train], "test": index[n_train:n_test]}
        if config.data == "fixed":
            splits["val"] = index[n_test:]
        graph = walk_graph(config)
        return TaskData(
            tokens=tokens,
            labels=labels,
            splits=splits,
            extras={
                "transition": torch.as_tensor(graph.transition),
                "stationary": torch.as_tensor(graph.stationary),
                # fresh walks are drawn by the sampler; fixed ones are the training split
                "fresh": torch.tensor(config.data == "fresh"),
            },
        )

    def forward(self, model, tokens):
        """Every next node: the full-sequence causal forward, without the hook wrappers
        (`interp.model.sequence_logits`, equal to `model(tokens)`)."""
        from interp.model import sequence_logits

        logits = sequence_logits(model, tokens)
        return logits.reshape(-1, logits.shape[-1])

    def sampler(self, task, train, device):
        if bool(task.extras["fresh"]):
            from circuits.families.graph_walk.walks import FreshWalks

            return FreshWalks(task, train.batch_size, train.seed, device)
        return super().sampler(task, train, device)

    def training_loss(self, kind: str):
        """Float32 cross-entropy: the next-node loss never falls below H (~2 nats here), so
        float64 adds nothing but time (~15 % of a step); the excess loss is measured in
        float64 by the paired estimator. StableMax stays the float64 default."""
        if kind == "stablemax":
            return super().training_loss(kind)
        import torch.nn.functional as F

        return F.cross_entropy

    def collapse_rule(self, task):
        """Accuracy is capped near 1/k here, so the rule watches the training loss: a collapse
        is `train_loss` more than 0.3 nats above its best for 3 checkpoints in a row."""
        from interp.collapse import CollapseRule

        return CollapseRule("train_loss", drop=0.3, higher_is_better=False)

    def patching_design(self, task, n: int, seed: int = 0):
        """Clean: `n` test walks. Corrupt: the same walks with the current (last) node
        replaced by a uniformly drawn other node, so the context before it is unchanged.
        Metric: the log-probability of the clean walk's true next node at the last position,
        which a model that reads the current node loses when the corrupted node is not a
        neighbour of it."""
        import torch

        from interp.registry import PatchingDesign

        tokens, labels = task.split("test")
        clean, answer = tokens[:n], labels[:n, -1]
        generator = torch.Generator().manual_seed(seed)
        n_nodes = int(task.extras["transition"].shape[0])
        shift = torch.randint(1, n_nodes, (len(clean),), generator=generator)
        corrupt = clean.clone()
        corrupt[:, -1] = (clean[:, -1] + shift) % n_nodes  # never the clean node
        metric = "log p(true next node) at the last position; corrupt = current node replaced"
        return PatchingDesign(clean, corrupt, answer, -1, metric)

    def evaluators(self, config: RunConfig) -> list:
        from circuits.families.graph_walk.analysis import excess_loss_evaluator

        return [excess_loss_evaluator(config, walk_graph(config.task))]

    def sweep_columns(self, config, metrics):
        """The scaling study's columns: `scaling_loss` = H + the paired excess loss (the model's
        expected loss, without sampling noise), `scaling_irreducible` = H,
        the two exclusion rules of `interp.sweep.scaling` (`optimization_limited`: the plateau
        rule of L(D); `still_improving`: the step-budget rule of L(N)), and the add-½ count
        learner's excess on exactly the tokens the run trained on, knowing the graph
        (`count_excess_graph`) or over all nodes (`count_excess_all`)."""
        from circuits.families.graph_walk import limits as walk_limits
        from interp.sweep.scaling import optimization_limited, plateau_limited

        last = metrics[-1]
        if "excess_loss" not in last:
            return {}
        graph = walk_graph(config.task)
        counts = walk_limits.trained_counts(config, int(last["step"]))
        return {
            "scaling_loss": last["entropy_rate"] + last["excess_loss"],
            "scaling_irreducible": last["entropy_rate"],
            "optimization_limited": plateau_limited(metrics),
            "still_improving": optimization_limited(metrics, column="excess_loss", tol=0.1),
            "count_excess_graph": walk_limits.kt_excess_loss(graph, counts, True),
            "count_excess_all": walk_limits.kt_excess_loss(graph, counts, False),
        }

    def describe(self, config: GraphWalkTask) -> str:
        graph = walk_graph(config)
        return (
            f"{config.graph} graph, n {graph.n}, m {graph.m}, kappa {config.kappa}, context "
            f"{config.context}, {config.data} walks, H {graph.entropy_rate():.4f} nats"
        )


FAMILY = register(GraphWalkFamily())
