"""Recipes: the `Recipe` protocol, the pluggy hook spec, the registry and the built-in recipes."""
