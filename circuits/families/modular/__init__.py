"""The modular-arithmetic family: binary operations mod p (Nanda et al. 2023, Power et al. 2022).

- `family`: the config (`ModularTask`), presets, phases, report facts and the `Family` object
- `task`: the p² examples and their split
- `fourier`: the Fourier basis, key frequencies, restricted and excluded loss, Gini
- `circuit_score`: the progress measure read from training data (docs/metrics.md)
- `analysis`: every checkpoint's table row and figure data; `circuit_graphs`: the circuit
  graph with neurons grouped by frequency cluster
- `figures`, `report`: the family's plotly figures and report sections
"""
