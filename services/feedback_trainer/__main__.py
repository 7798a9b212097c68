"""The feedback-trainer service: records views, clicks and purchases for the recommender."""
from services.feedback_trainer.service import main

main()
