"""delivery: replies sent through the platforms' send APIs (elmo.replies -> elmo.feedback, one view per recommendation)."""
