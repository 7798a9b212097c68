"""The feedback-trainer service: learns from customers' reactions."""
