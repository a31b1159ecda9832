"""The embedded default: tiny offline XVLA learner configs for gym-hil PandaPickCube."""
