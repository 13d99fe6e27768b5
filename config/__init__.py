"""Settings, operator files (branches, survey, taxonomy) and the composition root: the CLI and create_app."""
