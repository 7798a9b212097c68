from services.asr.service import main

main()
