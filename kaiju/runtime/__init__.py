"""The runtime: service base class, class registry, dependency graph and the entrypoint."""
