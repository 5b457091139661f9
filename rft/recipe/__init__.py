"""Recipes: the schema (``schema``) and reading, overriding and writing them (``load``)."""

from rft.recipe.load import dump_recipe, load_recipe, validate
from rft.recipe.schema import Recipe

__all__ = ["Recipe", "dump_recipe", "load_recipe", "validate"]
