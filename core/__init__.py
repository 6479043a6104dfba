"""TokOne core: app factory, hookspecs, config, pipeline, storage and CLI."""
