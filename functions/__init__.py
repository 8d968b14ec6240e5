"""Thin trigger adapters of the Azure Functions app (the Python v2 programming model).

Each module is a ``func.Blueprint`` that ``function_app.py`` registers: it
parses its binding's input, calls the very handler the local runner calls
(``shared.local.workers``), and maps failures to the failure policy of
``functions._resilience``. No business logic lives here, and nothing here runs
at import time but the decorators: the platform is built on first use
(``functions._platform``).
"""
