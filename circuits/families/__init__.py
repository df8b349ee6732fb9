"""The task families that ship with interp, one module each (`interp.registry`).

`modular` (binary operations mod p), `two_hop` (two-hop composition) and `comparison`
(attribute comparison) are registered when their module is imported; the registry
imports them by module path, so nothing here is imported eagerly.
"""
