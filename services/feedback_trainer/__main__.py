"""The feedback-trainer service: learns from reactions (interactions, reply bandit, corrections)."""
from services.feedback_trainer.service import main

main()
