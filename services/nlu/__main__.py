from services.nlu.service import main

main()
