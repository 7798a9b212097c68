"""What the feedback loop learns from each reaction, and how it is kept in Redis.

One code path for live processing (the feedback-trainer) and for `elmo state rebuild` (a replay of
elmo.replies and elmo.feedback after Redis lost its state): the rebuilt state is what live
processing produced because it is produced by the same functions.
"""
