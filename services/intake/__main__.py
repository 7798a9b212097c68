from services.intake.service import main

main()
