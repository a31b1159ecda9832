"""gym-hil PandaPickCube (``env.type="pirl_pick_cube"``): the evaluation set every success rate
here is measured on, the few-shot SFT checkpoint builder and the shipped checkpoint, and the πRL /
DSRL / env settings the demo and the benchmarks share."""
