"""The model: recipes, profiles, the TOML reader, and the step and source types a plan is made of."""
