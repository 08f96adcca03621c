"""The arms a comparison scores, in the order tables show them, and the trivial floor beside them."""

PINN = "PtychoPINN"  # the physics-informed network; the deltas are it minus each other arm
OTHER_ARMS = ("Baseline", "PtyChi")  # the supervised network, the iterative reconstruction
EXPECTED_MODELS = (PINN, *OTHER_ARMS)  # each must have a numeric metric for a comparison to succeed
FLOOR_MODEL = "FlatFloor"  # a flat phase and constant amplitude: the score of an arm that learned nothing
TRAINED_ARMS = {"baseline": "Baseline"}  # a training's arm by model; a view's PINN is PtychoPINN
