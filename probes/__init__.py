"""Read-outs of hidden states: `logit_lens` (the unembedding applied to every layer),
`patching` (activation patching, causal tracing and mediation) and `linear` (linear probes
fitted on cached activations, scikit-learn underneath)."""
