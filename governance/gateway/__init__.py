"""The query gateway: policy check, production version, serving backend, audit."""
