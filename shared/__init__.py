"""Accrue: the product package.

Domain core, ports, adapters, the HTTP application and the local runner. Nothing
in here imports ``azure.functions``: the trigger adapters in ``functions/`` call
into this package, and so does the local runner, so both run one code path.
"""
