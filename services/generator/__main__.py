from services.generator.service import main

main()
