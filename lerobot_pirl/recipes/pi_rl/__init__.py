"""πRL on LeRobot: the decision-level transition format and on-policy rollout assembly."""
