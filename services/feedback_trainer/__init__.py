"""The feedback-trainer service: learns from customers' reactions (for now: records interactions)."""
