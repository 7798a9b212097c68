from services.delivery.service import main

main()
