"""The HTTP API: one ASGI app (FastAPI), served by uvicorn locally and by
``AsgiFunctionApp`` on Azure."""
