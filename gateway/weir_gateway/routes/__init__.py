"""One router per resource; each route is wiring onto the typed client."""
