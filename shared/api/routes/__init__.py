"""One router per resource; each route is thin: parse, authorise, call a service."""
