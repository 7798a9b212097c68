"""The generator service: dialogue policy and grounded replies (elmo.recommendations -> elmo.replies)."""
