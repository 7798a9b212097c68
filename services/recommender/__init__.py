"""The recommender service: items worth suggesting, each with a reason and a tracking link."""
