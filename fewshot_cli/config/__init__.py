"""Config plumbing: structured schemas, the location of conf/, and checks on `_target_` values."""
