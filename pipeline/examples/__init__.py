"""Examples shipped with the package, each with a study file under ``studies/``."""
