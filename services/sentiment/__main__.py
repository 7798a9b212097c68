from services.sentiment.service import main

main()
