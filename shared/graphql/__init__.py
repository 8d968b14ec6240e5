"""The GraphQL reporting API (issue 14), served at ``/graphql/v1`` by the same ASGI app as REST.

One module per job: ``auth`` (the REST API keys and roles, per field), ``context`` (what a request
carries), ``loaders`` (batched reads: no N+1), ``limits`` (depth, cost and introspection checked
before execution), ``stats`` (the experiments' confidence intervals), ``types`` and ``queries``
(the read side, over the same application services REST uses), ``feed`` and ``subscriptions``
(live updates from the ledger's change feed), ``schema`` (assembly) and ``endpoint`` (the ASGI
mount: HTTP and graphql-transport-ws). See docs/graphql.md."""
