"""The recommender service: items worth suggesting for each scored message."""
from services.recommender.service import main

main()
