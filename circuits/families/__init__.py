"""The task families that ship with interp, one package each (`interp.registry`).

`modular/` (binary operations mod p), `entity/` (two-hop composition and comparison, with
what they share) and `graph_walk/` (next-node prediction on random walks). Each package's
`family.py` (or `two_hop.py`, `comparison.py`) defines the config and registers the family
when imported; the registry imports them by module path (`registry.BUILTIN`), so nothing
here is imported eagerly. `base.py` is the analysis interface they implement.
"""
